/** The callback payload: the original's 10 keys in order, then the additive `sha256`. */
import type { JobRecord } from '../record.js';

/** `base` + `/<ID[0:3]>/<ID>` with exactly one `/` between parts; a query string is kept. */
export function joinDownloadUrl(base: string, id: string): string {
  const cut = base.search(/[?#]/);
  const head = cut >= 0 ? base.slice(0, cut) : base;
  const tail = cut >= 0 ? base.slice(cut) : '';
  return `${head.replace(/\/+$/, '')}/${id.slice(0, 3)}/${id}${tail}`;
}

export function buildPayload(record: JobRecord): string {
  const success = record.downloadState === 'Success';
  const payload = {
    success,
    error: success ? '' : record.downloadMeta,
    extra: record.spec.extra,
    image_size: success ? record.imageSize : '',
    resource_url: record.spec.url,
    download_url: success ? joinDownloadUrl(record.downloadUrl, record.spec.id) : '',
    job_id: record.spec.id,
    response_code: record.responseCode,
    delivered: true,
    delivery_error: '',
    sha256: success ? record.sha256 : '',
  };
  return JSON.stringify(payload);
}
