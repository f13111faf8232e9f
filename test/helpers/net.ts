/** Loopback helpers: free ports and small HTTP requests with a time limit. */
import { createServer } from 'node:net';

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface SimpleResponse {
  status: number;
  headers: Headers;
  text: string;
}

/** fetch with a timeout, returning the body as text. */
export async function request(
  url: string,
  init: RequestInit = {},
  timeoutMs = 10_000,
): Promise<SimpleResponse> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Polls `probe` until it returns true or the time is up. */
export async function eventually(
  probe: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
  stepMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await probe()) return;
    } catch {
      // A probe that throws (connection refused while a server boots) simply has not succeeded yet.
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}
