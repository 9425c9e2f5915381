// storage-full.js: what a failed cache write means. Storage full (the browser's quota, or no space
// on the disk of Node's hub cache) with the cache asked for (cache: true) is an `oom` error that
// says what to do; with cache 'auto' (the default) or a cache object of your own, or any other
// failure, the file is just not cached and the load goes on. source.js calls it after a failed cache put.
import { MembaError, ErrorCodes } from './errors.js';

function isQuotaError(e) {
  return e?.name === 'QuotaExceededError' || e?.code === 'ENOSPC' || e?.code === 'EDQUOT';
}

/** source.js, after a failed cache write: an oom error for a full storage when the cache was asked for. */
export function cachePutFailed(err, { required, name, size }) {
  if (!required || !isQuotaError(err)) return;
  const mb = `${(size / 2 ** 20).toFixed(1)} MB`;
  const fix = err?.code === 'ENOSPC' || err?.code === 'EDQUOT'
    ? `no space left on the disk of the hub cache: free space, point HF_HUB_CACHE (or { cacheDir }) elsewhere, or load with { cache: false }`
    : `the browser's storage quota is used up: free space with Mamba.cache.delete(source) or Mamba.cache.clear(), ask for more with navigator.storage.persist(), or load with { cache: false }`;
  throw new MembaError(ErrorCodes.OOM, `caching ${name} (${mb}) failed: ${fix}`, { cause: err });
}
