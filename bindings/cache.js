// cache.js: Mamba.cache, the files this library keeps between loads, and what a full disk means.
//   Browsers: the Cache API cache 'memba-wasm-v1' (source.js fills it with URL and hub downloads,
//   keyed by URL, so by revision too; entries are not revalidated). list() gives one entry per
//   file, delete(source) removes the files of a hub id or under a base URL, clear() all of them.
//   Node: the Hugging Face hub cache (hub-cache.js), shared with Python: list() gives one entry per
//   snapshot file, delete(hubId) removes a repo's folder; clear() needs an explicit { cacheDir }
//   (the default folder holds what Python downloaded too).
// Storage full while caching: storage-full.js.
// Deliberately not here: filling the caches (source.js, hub-cache.js).
import { MembaError, ErrorCodes } from './errors.js';
import { IS_NODE } from './env.js';
import { CACHE_NAME } from './source.js';
import { listHubCache, deleteHubRepo, hubCacheDir } from './hub-cache.js';

const HUB_FILE = /\/([A-Za-z0-9][\w.-]*\/[\w.-]+)\/resolve\/([^/]+)\/(.+)$/;
const useNode = () => IS_NODE && typeof globalThis.caches?.open !== 'function';

async function browserCache() {
  if (typeof globalThis.caches?.open !== 'function') throw new MembaError(ErrorCodes.UNSUPPORTED, 'this environment has no Cache API');
  return globalThis.caches.open(CACHE_NAME);
}

/** Whether a cached URL belongs to `source` (a hub id: any revision unless given; else a base URL). */
function belongs(url, source, revision) {
  const hub = HUB_FILE.exec(new URL(url).pathname);
  if (typeof source === 'string' && !/^[a-z]+:/i.test(source) && !source.startsWith('/') && !source.startsWith('.'))
    return !!hub && hub[1] === source && (revision === undefined || decodeURIComponent(hub[2]) === revision);
  let base = new URL(String(source), globalThis.location?.href).href;
  if (!base.endsWith('/')) base += '/';
  return url.startsWith(base);
}

export const modelCache = {
  /**
   * What is cached. Browsers: [{ url, size, repo?, revision?, file? }] (repo etc. for hub files);
   * Node: [{ repo, revision, refs, file, size, path }] from the hub cache ({ cacheDir } or the default).
   */
  async list({ cacheDir } = {}) {
    if (useNode()) return listHubCache(cacheDir);
    const cache = await browserCache();
    const out = [];
    for (const req of await cache.keys()) {
      const res = await cache.match(req);
      const size = Number(res?.headers.get('content-length') ?? NaN);
      const hub = HUB_FILE.exec(new URL(req.url).pathname);
      res?.body?.cancel?.().catch(() => {});
      out.push({ url: req.url, size: Number.isFinite(size) ? size : null, ...(hub ? { repo: hub[1], revision: decodeURIComponent(hub[2]), file: hub[3].split('/').map(decodeURIComponent).join('/') } : {}) });
    }
    return out;
  },

  /**
   * Removes the cached files of a source: a hub id (every revision, or { revision }), or in browsers a
   * base URL (every file under it). Resolves with the number of files removed.
   */
  async delete(source, { revision, cacheDir } = {}) {
    if (typeof source !== 'string' && !(source instanceof URL)) throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'delete(source): a hub id or a base URL');
    if (useNode()) {
      if (revision !== undefined) throw new MembaError(ErrorCodes.UNSUPPORTED, 'in Node, delete(hubId) removes every revision of a repo');
      return deleteHubRepo(String(source), cacheDir);
    }
    const cache = await browserCache();
    let n = 0;
    for (const req of await cache.keys()) if (belongs(req.url, source, revision) && (await cache.delete(req))) n++;
    return n;
  },

  /** Removes every cached file (browsers). Node: only with an explicit { cacheDir }, which it empties of model repos. */
  async clear({ cacheDir } = {}) {
    if (useNode()) {
      if (!cacheDir) throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `clear() in Node needs { cacheDir }: the default, ${await hubCacheDir()}, is the Hugging Face cache Python shares; remove repos one by one with delete(hubId)`);
      let n = 0;
      for (const repo of new Set((await listHubCache(cacheDir)).map((e) => e.repo))) n += await deleteHubRepo(repo, cacheDir);
      return n;
    }
    if (typeof globalThis.caches?.delete !== 'function') throw new MembaError(ErrorCodes.UNSUPPORTED, 'this environment has no Cache API');
    const n = (await (await browserCache()).keys()).length;
    await globalThis.caches.delete(CACHE_NAME);
    return n;
  },
};
