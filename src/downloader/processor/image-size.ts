/** Width and height from JPEG, PNG and GIF headers, without decoding the image. */

export class ImageSizeError extends Error {
  override readonly name = 'ImageSizeError';
}

function png(buf: Buffer): string {
  if (buf.length < 24 || buf.toString('latin1', 12, 16) !== 'IHDR') {
    throw new ImageSizeError('png: invalid format: missing IHDR chunk');
  }
  return `${buf.readUInt32BE(16)}x${buf.readUInt32BE(20)}`;
}

function gif(buf: Buffer): string {
  if (buf.length < 10) throw new ImageSizeError('gif: unexpected EOF');
  return `${buf.readUInt16LE(6)}x${buf.readUInt16LE(8)}`;
}

const SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

function jpeg(buf: Buffer): string {
  let i = 2;
  while (i + 4 <= buf.length) {
    if (buf[i] !== 0xff) throw new ImageSizeError('invalid JPEG format: missing 0xff marker start');
    const marker = buf[i + 1] ?? 0;
    if (marker === 0xff) {
      i += 1;
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    const length = buf.readUInt16BE(i + 2);
    if (SOF.has(marker)) {
      if (i + 9 > buf.length) break;
      return `${buf.readUInt16BE(i + 7)}x${buf.readUInt16BE(i + 5)}`;
    }
    i += 2 + length;
  }
  throw new ImageSizeError('jpeg: unexpected EOF before the frame header');
}

/**
 * `<W>x<H>` for the three formats, `''` for any other type; throws ImageSizeError on bad headers.
 */
export function imageSize(mime: string, header: Buffer): string {
  if (mime === 'image/png') return png(header);
  if (mime === 'image/gif') return gif(header);
  if (mime === 'image/jpeg') return jpeg(header);
  return '';
}
