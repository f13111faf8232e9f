/** Build identity, injected by esbuild at bundle time; source runs report a development build. */

declare const __SKROUTZ_VERSION__: string | undefined;
declare const __SKROUTZ_REVISION__: string | undefined;

export const VERSION: string =
  typeof __SKROUTZ_VERSION__ === 'string' ? __SKROUTZ_VERSION__ : '0.0.0-dev';
export const REVISION: string =
  typeof __SKROUTZ_REVISION__ === 'string' ? __SKROUTZ_REVISION__ : 'unknown';
