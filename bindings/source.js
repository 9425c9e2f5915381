// source.js: turns what a user passes as a model "source" (directory, URL, Hugging Face hub id, or
// in-memory files) into one object that reads named files, with aggregate progress, abort and an
// optional browser Cache API layer. It deliberately knows nothing about file formats or Mamba
// (see checkpoint.js), and imports node: modules lazily, only for filesystem sources.

import { MembaError, ErrorCodes, abortError, throwIfAborted } from './errors.js';
import { IS_NODE } from './env.js';
import { defaultModelSource, urlMapSource } from './named-sources.js';
import { openHubCache } from './hub-cache.js';
import { cachePutFailed } from './storage-full.js';

/** Name of the Cache API cache used for url and hub sources. */
export const CACHE_NAME = 'memba-wasm-v1';

const PROGRESS_BYTES = 64 * 1024;
const PROGRESS_MS = 50;
const FILE_CHUNK = 8 * 1024 * 1024;
/** Files of one read call in flight at once (a 20k-shard index must not fire 20k requests). */
export const READ_CONCURRENCY = 4;
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Node built-ins are imported lazily, and hidden from bundlers, so browsers never load them. */
const nodeImport = (specifier) => import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);
const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

function invalid(message) {
  return new MembaError(ErrorCodes.INVALID_ARGUMENT, message);
}

function allocBytes(n, what) {
  try {
    return new Uint8Array(n);
  } catch (e) {
    throw new MembaError(ErrorCodes.OOM, `cannot allocate ${n} bytes for ${what}`, { cause: e });
  }
}

/** Checks a file name asked of a source: a relative path that cannot escape the source. */
function checkName(name) {
  if (typeof name !== 'string' || name === '') throw invalid(`file name must be a non-empty string (got ${String(name)})`);
  if (name.startsWith('/') || name.includes('\\') || /^[A-Za-z][A-Za-z0-9+.-]*:/.test(name) ||
      name.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw invalid(`file name ${JSON.stringify(name)} must be a relative path inside the source`);
  }
}

/** Aggregate progress over the files of one read call. */
class Progress {
  constructor(callback, names) {
    this.callback = callback;
    this.sizes = new Map(names.map((n) => [n, undefined]));
    this.unknown = names.length;
    this.perFile = new Map();
    this.discarded = 0; // bytes of abandoned attempts (a broken cache entry): counted in total too
    this.loaded = 0;
    this.lastLoaded = 0;
    this.lastTime = now();
  }

  setSize(name, size) {
    const prev = this.sizes.get(name);
    if (prev === undefined && size !== undefined) this.unknown--;
    else if (prev !== undefined && size === undefined) this.unknown++;
    this.sizes.set(name, size);
  }

  get total() {
    if (this.unknown > 0) return undefined;
    let sum = this.discarded;
    for (const s of this.sizes.values()) sum += s;
    return sum;
  }

  /** Counts `n` new bytes of `file`; emits when enough changed, or always when `final`. */
  add(status, file, n, final = false) {
    this.loaded += n;
    this.perFile.set(file, (this.perFile.get(file) ?? 0) + n);
    if (!this.callback) return;
    const t = now();
    if (final || this.loaded - this.lastLoaded >= PROGRESS_BYTES || t - this.lastTime >= PROGRESS_MS) {
      const event = { status, file, loaded: this.loaded, total: this.total };
      const key = `${status}|${file}|${event.loaded}|${event.total}`;
      if (key === this.lastKey) return; // a final event identical to the previous one
      this.lastKey = key;
      this.lastLoaded = this.loaded;
      this.lastTime = t;
      this.callback(event);
    }
  }

  /** Forgets a failed attempt at `file` (its bytes stay in loaded and total, so both stay consistent). */
  restart(file) {
    this.discarded += this.perFile.get(file) ?? 0;
    this.perFile.set(file, 0);
    this.setSize(file, undefined);
  }

  done() {
    this.callback?.({ status: 'done', file: null, loaded: this.loaded, total: this.total });
  }
}

/** Resolves like `promise`, but rejects as soon as `signal` aborts; a late value goes to `discard`. */
function raceAbort(promise, signal, discard) {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      promise.then(discard, () => {});
      reject(abortError(signal));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => { signal.removeEventListener('abort', onAbort); if (signal.aborted) discard?.(v); else resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

function cancelBody(response) {
  try { response?.body?.cancel?.().catch(() => {}); } catch { /* locked or closed: nothing to release */ }
}

function contentLength(response) {
  const enc = response.headers?.get?.('content-encoding');
  if (enc && enc.toLowerCase() !== 'identity') return undefined; // the header counts encoded bytes
  const raw = response.headers?.get?.('content-length');
  if (raw == null || !/^\s*\d+\s*$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The caller's look at the start of a file while it arrives (read's `peek` option): peek(name,
 * prefix) is called first with no bytes, then with the bytes so far whenever there are as many as
 * it asked for; it returns how many leading bytes it needs next (0, or no more than it got: done)
 * and may throw to stop the read (e.g. a header that says the file is too large to use).
 */
function peeker(peek, name) {
  if (!peek) return null;
  let need = 0;
  const ask = (prefix) => {
    const n = peek(name, prefix);
    need = Number.isSafeInteger(n) && n > prefix.length ? n : 0;
  };
  ask(new Uint8Array(0));
  return {
    /** Leading bytes wanted before the next call (0: no more calls). */
    get need() {
      return need;
    },
    /** Offers the bytes read so far (the whole prefix of the file). */
    feed(prefix) {
      if (need && prefix.length >= need) ask(prefix);
    },
  };
}

/** The chunks received so far as one contiguous prefix. */
function joined(chunks, received) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(received);
  let pos = 0;
  for (const c of chunks) { out.set(c, pos); pos += c.length; }
  return out;
}

/**
 * Reads a whole body stream, counting bytes for progress; writes into one preallocated buffer when
 * the size is known, else collects chunks. Cancels the reader on abort or error.
 */
async function readStream(stream, size, ctx) {
  const { name, status, progress, signal, source, peek } = ctx;
  const reader = stream.getReader();
  let buf = size === undefined ? null : allocBytes(size, name);
  const chunks = [];
  let received = 0;
  const onAbort = () => { reader.cancel(signal.reason).catch(() => {}); };
  signal.addEventListener('abort', onAbort, { once: true });
  let ok = false;
  try {
    for (;;) {
      throwIfAborted(signal);
      let step;
      try {
        step = await reader.read();
      } catch (e) {
        throwIfAborted(signal);
        throw new MembaError(ErrorCodes.NETWORK, `reading ${name} from ${source} failed after ${received} bytes: ${e?.message ?? e}`, { cause: e });
      }
      throwIfAborted(signal);
      if (step.done) break;
      const value = step.value;
      if (!value || value.length === 0) continue;
      if (buf) {
        if (received + value.length <= buf.length) {
          buf.set(value, received);
        } else { // more bytes than announced: fall back to collecting chunks
          chunks.push(buf.subarray(0, received));
          chunks.push(value);
          buf = null;
          progress.setSize(name, undefined);
        }
      } else {
        chunks.push(value);
      }
      received += value.length;
      progress.add(status, name, value.length);
      if (peek?.need && received >= peek.need) peek.feed(buf ? buf.subarray(0, received) : joined(chunks, received));
    }
    ok = true;
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (!ok) reader.cancel().catch(() => {});
  }
  let bytes;
  if (buf) {
    if (received !== buf.length) {
      throw new MembaError(ErrorCodes.NETWORK, `${name} from ${source}: expected ${buf.length} bytes, got ${received} (truncated)`);
    }
    bytes = buf;
  } else if (chunks.length === 1 && chunks[0].length === received) {
    bytes = chunks[0];
  } else {
    bytes = allocBytes(received, name);
    let pos = 0;
    for (const c of chunks) { bytes.set(c, pos); pos += c.length; }
  }
  progress.setSize(name, received);
  progress.add(status, name, 0, true);
  return bytes;
}

/** Reads a Response (network or cache) with progress. */
async function readResponse(response, ctx) {
  const size = contentLength(response);
  ctx.progress.setSize(ctx.name, size);
  if (response.body && typeof response.body.getReader === 'function') return readStream(response.body, size, ctx);
  const ab = await raceAbort(Promise.resolve(response.arrayBuffer()), ctx.signal);
  const bytes = new Uint8Array(ab);
  ctx.peek?.feed(bytes);
  ctx.progress.setSize(ctx.name, bytes.length);
  ctx.progress.add(ctx.status, ctx.name, bytes.length, true);
  return bytes;
}

/**
 * Runs `fn` over `items` with at most `limit` calls in flight, in order; like Promise.allSettled.
 * Once `signal` fires the items not yet started are not started (they settle with its reason).
 */
async function pooled(items, limit, signal, fn) {
  const settled = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      if (signal.aborted) {
        settled[i] = { status: 'rejected', reason: signal.reason };
        continue;
      }
      try {
        settled[i] = { status: 'fulfilled', value: await fn(items[i]) };
      } catch (reason) {
        settled[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return settled;
}

/**
 * Runs one read call: validates names, links abort, reads the files (READ_CONCURRENCY at a time,
 * each with its own abort signal, so listeners stay few however many files there are) and reports
 * aggregate progress. On the first failure the other reads are cancelled and waited for.
 * Options: optional (names that may be missing: null), signal, onProgress, peek (see peeker).
 */
async function runRead(names, options, defaults, description, readOne, prepare) {
  if (!Array.isArray(names)) throw invalid('read(names): names must be an array of file names');
  const opts = options ?? {};
  if (opts.optional !== undefined && !Array.isArray(opts.optional) && !(opts.optional instanceof Set)) {
    throw invalid('read(names, { optional }): optional must be an array or a Set of file names');
  }
  const optional = new Set(opts.optional ?? []);
  const signal = opts.signal ?? defaults.signal;
  const onProgress = opts.onProgress ?? defaults.onProgress;
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('onProgress must be a function');
  if (opts.peek !== undefined && typeof opts.peek !== 'function') throw invalid('read(names, { peek }): peek must be a function');
  throwIfAborted(signal);
  const unique = [...new Set(names)];
  unique.forEach(checkName);
  const progress = new Progress(onProgress, unique);
  prepare?.(unique, progress);
  const controller = new AbortController();
  const forward = () => controller.abort(signal.reason);
  signal?.addEventListener('abort', forward, { once: true });
  let first = null;
  let settled;
  try {
    settled = await pooled(unique, READ_CONCURRENCY, controller.signal, async (name) => {
      const own = new AbortController(); // this file's reads listen here, not on the shared signal
      const stop = () => own.abort(controller.signal.reason);
      controller.signal.addEventListener('abort', stop, { once: true });
      try {
        const bytes = await readOne(name, { signal: own.signal, progress, peek: peeker(opts.peek, name) });
        if (bytes === null) {
          progress.setSize(name, 0);
          if (!optional.has(name)) throw new MembaError(ErrorCodes.NOT_FOUND, `${name} not found in ${description}`);
        }
        return bytes;
      } catch (e) {
        if (!first) {
          first = e;
          controller.abort(e);
        }
        throw e;
      } finally {
        controller.signal.removeEventListener('abort', stop);
      }
    });
  } finally {
    signal?.removeEventListener('abort', forward);
  }
  if (first) throw signal?.aborted ? abortError(signal) : first;
  const result = new Map();
  unique.forEach((name, i) => result.set(name, settled[i].value));
  progress.done();
  return result;
}

// ---------------------------------------------------------------------------------------------
// Source kinds

function filesSource(files, defaults) {
  const isMap = files instanceof Map;
  if (!isMap && (files === null || typeof files !== 'object')) throw invalid('files must be an object or a Map of name -> contents');
  const get = (name) => (isMap ? files.get(name) : Object.hasOwn(files, name) ? files[name] : undefined);
  const count = isMap ? files.size : Object.keys(files).length;
  const description = `in-memory files (${count})`;

  function normalize(name, value) {
    if (value === undefined || value === null) return null;
    if (value instanceof Uint8Array) return { bytes: value };
    if (value instanceof ArrayBuffer) return { bytes: new Uint8Array(value) };
    if (ArrayBuffer.isView(value)) return { bytes: new Uint8Array(value.buffer, value.byteOffset, value.byteLength) };
    if (typeof value === 'string') return { bytes: new TextEncoder().encode(value) };
    if (typeof Blob !== 'undefined' && value instanceof Blob) return { blob: value };
    if (typeof value === 'object') {
      try {
        return { bytes: new TextEncoder().encode(JSON.stringify(value)) };
      } catch (e) {
        throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `file ${name}: object cannot be serialised as JSON (${e.message})`, { cause: e });
      }
    }
    throw invalid(`file ${name}: unsupported contents of type ${typeof value}`);
  }

  return {
    kind: 'files',
    description,
    async has(name) {
      checkName(name);
      const v = get(name);
      return v !== undefined && v !== null;
    },
    read(names, options) {
      const prepared = new Map();
      const prepare = (unique, progress) => { // sizes up front, so the first event already has a total
        for (const n of unique) {
          const item = normalize(n, get(n));
          prepared.set(n, item);
          progress.setSize(n, item === null ? 0 : item.bytes ? item.bytes.length : item.blob.size);
        }
      };
      return runRead(names, options, defaults, description, async (name, { signal, progress, peek }) => {
        const item = prepared.get(name);
        if (item === null) return null;
        throwIfAborted(signal);
        if (item.bytes) {
          peek?.feed(item.bytes);
          progress.add('read', name, item.bytes.length, true);
          return item.bytes;
        }
        const ctx = { name, status: 'read', progress, signal, source: description, peek };
        if (typeof item.blob.stream === 'function') return readStream(item.blob.stream(), item.blob.size, ctx);
        return readResponse({ body: null, headers: null, arrayBuffer: () => item.blob.arrayBuffer() }, ctx);
      }, prepare);
    },
  };
}

async function dirSource(dirPath, defaults) {
  const fs = await nodeImport('node:fs/promises');
  const path = await nodeImport('node:path');
  const root = path.resolve(dirPath);
  const description = `directory ${root}`;

  function resolveInside(name) {
    checkName(name);
    const full = path.resolve(root, name);
    const rel = path.relative(root, full);
    if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw invalid(`file name ${JSON.stringify(name)} escapes ${description}`);
    return full;
  }

  return {
    kind: 'dir',
    description,
    async has(name) {
      try {
        return (await fs.stat(resolveInside(name))).isFile();
      } catch (e) {
        if (e instanceof MembaError) throw e;
        return false;
      }
    },
    read(names, options) {
      return runRead(names, options, defaults, description, async (name, { signal, progress, peek }) => {
        const full = resolveInside(name);
        let fh;
        try {
          fh = await fs.open(full, 'r');
        } catch (e) {
          if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return null;
          throw new MembaError(ErrorCodes.NOT_FOUND, `cannot open ${name} in ${description}: ${e.message}`, { cause: e });
        }
        try {
          const st = await fh.stat();
          if (!st.isFile()) return null;
          progress.setSize(name, st.size);
          // reads [off, end) of the file into buf at off; returns the new offset (short at EOF)
          const fill = async (buf, off, end) => {
            while (off < end) {
              throwIfAborted(signal);
              const { bytesRead } = await fh.read(buf, off, Math.min(FILE_CHUNK, end - off), off);
              if (bytesRead === 0) break;
              off += bytesRead;
              progress.add('read', name, bytesRead);
            }
            return off;
          };
          // what `peek` asks for first, in a small buffer: the file's buffer is allocated only
          // once it has seen the start (a header may say the file is too large to use)
          let head = new Uint8Array(0);
          while (peek?.need && head.length < st.size) {
            const next = allocBytes(Math.min(peek.need, st.size), name);
            next.set(head);
            const got = await fill(next, head.length, next.length);
            head = next.subarray(0, got);
            if (got < next.length) break; // shrank: reported below
            peek.feed(head);
          }
          const buf = allocBytes(st.size, name);
          buf.set(head);
          const off = await fill(buf, head.length, st.size);
          throwIfAborted(signal);
          if (off !== st.size) throw new MembaError(ErrorCodes.NOT_FOUND, `${name} in ${description} shrank while being read`);
          progress.add('read', name, 0, true);
          return buf;
        } finally {
          await fh.close().catch(() => {});
        }
      });
    },
  };
}

// required: a cache write that fails for lack of space is an oom error (storage-full.js); else it is skipped
function httpSource(kind, description, urlFor, defaults, fetchImpl, cacheOption, required = cacheOption === true) {
  let cachePromise = null;
  const getCache = () => {
    if (!cachePromise) {
      cachePromise = (async () => {
        if (cacheOption === false) return null;
        if (typeof cacheOption === 'object' && cacheOption !== null) return cacheOption;
        if (typeof globalThis.caches?.open !== 'function') return null;
        try {
          return await globalThis.caches.open(CACHE_NAME);
        } catch {
          return null; // e.g. opaque origin or storage disabled: just do not cache
        }
      })();
    }
    return cachePromise;
  };

  async function fromCache(cache, url, ctx) {
    let hit;
    try {
      hit = await raceAbort(Promise.resolve(cache.match(url)), ctx.signal, cancelBody);
    } catch (e) {
      throwIfAborted(ctx.signal);
      return null; // a broken cache is the same as an empty one
    }
    if (!hit || (typeof hit.ok === 'boolean' && !hit.ok)) return null;
    try {
      return await readResponse(hit, { ...ctx, status: 'cache' });
    } catch (e) {
      throwIfAborted(ctx.signal);
      if (!(e instanceof MembaError) || e.code !== ErrorCodes.NETWORK) throw e; // e.g. oom, a throwing onProgress
      ctx.progress.restart(ctx.name); // an unreadable cache entry: download instead
      return null;
    }
  }

  async function request(url, signal) {
    try {
      return await raceAbort(Promise.resolve().then(() => fetchImpl(url, { signal })), signal, cancelBody);
    } catch (e) {
      throwIfAborted(signal);
      if (e instanceof MembaError) throw e;
      throw new MembaError(ErrorCodes.NETWORK, `fetching ${url} failed: ${e?.message ?? e}`, { cause: e });
    }
  }

  function httpError(response, url) {
    cancelBody(response);
    const err = new MembaError(ErrorCodes.NETWORK, `HTTP ${response.status}${response.statusText ? ' ' + response.statusText : ''} for ${url}`);
    err.status = response.status;
    return err;
  }

  return {
    kind,
    description,
    async has(name, { signal } = {}) {
      checkName(name);
      const url = urlFor(name);
      const cache = /^(blob|data):/.test(url) ? null : await getCache();
      if (cache) {
        try {
          const hit = await cache.match(url);
          if (hit && hit.ok !== false) { cancelBody(hit); return true; }
        } catch { /* ignore cache failures */ }
      }
      const controller = new AbortController();
      const forward = () => controller.abort(signal.reason);
      signal?.addEventListener('abort', forward, { once: true });
      try {
        throwIfAborted(signal);
        const response = await request(url, controller.signal);
        cancelBody(response);
        if (response.status === 404) return false;
        if (!response.ok) throw httpError(response, url);
        return true;
      } catch (e) {
        if (signal?.aborted) throw abortError(signal);
        throw e;
      } finally {
        signal?.removeEventListener('abort', forward);
        controller.abort();
      }
    },
    read(names, options) {
      return runRead(names, options, defaults, description, async (name, { signal, progress, peek }) => {
        const url = urlFor(name);
        const ctx = { name, status: 'download', progress, signal, source: description, peek };
        const cache = /^(blob|data):/.test(url) ? null : await getCache();
        if (cache) {
          const cached = await fromCache(cache, url, ctx);
          if (cached) return cached;
        }
        const response = await request(url, signal);
        if (response.status === 404) { cancelBody(response); return null; }
        if (!response.ok) throw httpError(response, url);
        const bytes = await readResponse(response, ctx);
        if (cache && typeof Response === 'function') {
          try {
            await cache.put(url, new Response(bytes, { headers: { 'content-length': String(bytes.length) } }));
          } catch (e) {
            // cache unavailable: the load itself succeeded; out of space: oom when the cache was asked for
            cachePutFailed(e, { required, name, size: bytes.length });
          }
        }
        return bytes;
      });
    },
  };
}

function urlSource(url, defaults, fetchImpl, cache) {
  const base = new URL(url.href);
  base.hash = '';
  if (!base.pathname.endsWith('/') && base.protocol !== 'blob:') base.pathname += '/';
  const urlFor = (name) => {
    try {
      return new URL(name.split('/').map(encodeURIComponent).join('/'), base).href;
    } catch (e) {
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `cannot resolve ${name} against ${base.href} (a blob: URL names one file; pass { files: { name: blob } } instead)`, { cause: e });
    }
  };
  return httpSource('url', `URL ${base.href}`, urlFor, defaults, fetchImpl, cache);
}

function hubSource(id, defaults, fetchImpl, cache, hubBase, revision, disk = null) {
  const baseHref = String(hubBase).replace(/\/+$/, '');
  const rev = encodeURIComponent(revision);
  const urlFor = (name) => `${baseHref}/${id}/resolve/${rev}/${name.split('/').map(encodeURIComponent).join('/')}`;
  const description = `hub repo ${id} (revision ${revision}, ${baseHref})`;
  // Node: the Hugging Face cache on disk, shared with Python's huggingface_hub (hub-cache.js)
  if (disk && (cache === 'auto' || cache === true)) {
    return openHubCache({ id, revision, urlPrefix: urlFor('x').slice(0, -1), fetch: fetchImpl, ...disk }).then((hc) =>
      httpSource('hub', `${description.slice(0, -1)}, ${hc.offline ? 'offline: only ' : ''}cache ${hc.dir})`, urlFor, defaults, hc.fetch, hc.cache, cache === true));
  }
  return httpSource('hub', description, urlFor, defaults, fetchImpl, cache);
}

/**
 * @typedef {object} ProgressEvent
 * @property {'download'|'cache'|'read'|'done'} status
 * @property {string|null} file   the file that progressed (null for 'done')
 * @property {number} loaded      bytes received so far over all files of the read call
 * @property {number|undefined} total  sum of all file sizes, undefined while some size is unknown
 */

/**
 * @typedef {object} Source
 * @property {'dir'|'url'|'hub'|'files'} kind
 * @property {string} description   where the files come from, for messages
 * @property {(names: string[], options?: {optional?: Set<string>|string[], signal?: AbortSignal, onProgress?: (e: ProgressEvent) => void}) => Promise<Map<string, Uint8Array|null>>} read
 *   reads all named files; a missing optional file maps to null, a missing required one is not_found.
 *   `signal` / `onProgress` default to those given to openSource.
 * @property {(name: string, options?: {signal?: AbortSignal}) => Promise<boolean>} has
 *   whether a file exists, without downloading it
 */

/**
 * Opens a model source.
 * @param {string | URL | Map<string, any> | {files: Record<string, any> | Map<string, any>}} source
 *   a directory path (Node), an http(s) base URL (or in browsers a relative URL / blob: URL), a Hugging
 *   Face hub id "owner/name", or in-memory files (Uint8Array, ArrayBuffer, string, JSON object, Blob)
 * @param {object} [options]
 * @param {AbortSignal} [options.signal]
 * @param {(e: ProgressEvent) => void} [options.onProgress]
 * @param {string} [options.hubBase] default 'https://huggingface.co'
 * @param {string} [options.revision] hub branch, tag or commit, default 'main'
 * @param {'auto'|boolean|{match: Function, put: Function}} [options.cache] Cache API use for url/hub sources
 * @param {typeof fetch} [options.fetch] fetch implementation, default globalThis.fetch
 * @returns {Promise<Source>}
 */
export async function openSource(source, options = {}) {
  const {
    signal, onProgress, hubBase = globalThis.process?.env?.HF_ENDPOINT || 'https://huggingface.co', revision = 'main', cache = 'auto',
    fetch: fetchImpl = globalThis.fetch, cacheDir, offline, // cacheDir, offline: Node's hub cache (hub-cache.js)
  } = options ?? {};
  if (cacheDir !== undefined && (typeof cacheDir !== 'string' || cacheDir === '')) throw invalid('cacheDir must be a non-empty string');
  if (offline !== undefined && typeof offline !== 'boolean') throw invalid('offline must be a boolean');
  throwIfAborted(signal);
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('onProgress must be a function');
  const cacheOk = cache === 'auto' || typeof cache === 'boolean' ||
    (cache !== null && typeof cache === 'object' && typeof cache.match === 'function' && typeof cache.put === 'function');
  if (!cacheOk) throw invalid("cache must be 'auto', true, false or an object with match() and put()");
  if (typeof revision !== 'string' || revision === '') throw invalid('revision must be a non-empty string');
  const defaults = { signal, onProgress };
  const http = (make) => {
    if (typeof fetchImpl !== 'function') throw invalid('no fetch implementation available; pass options.fetch');
    return make();
  };

  // 'default' (the embedded model) and { urls } (files named one by one): named-sources.js
  if (source === 'default') source = await defaultModelSource();
  if (source !== null && typeof source === 'object' && Object.hasOwn(source, 'urls')) {
    return urlMapSource(source, {
      http: (kind, description, urlFor, wrapFetch) => http(() => httpSource(kind, description, urlFor, defaults, wrapFetch(fetchImpl), cache)),
      dir: (dirPath) => dirSource(dirPath, defaults),
    });
  }
  if (source instanceof Map) return filesSource(source, defaults);
  if (source instanceof URL) {
    if (source.protocol === 'file:' && IS_NODE) return openLocal(source, defaults, null);
    if (!['http:', 'https:', 'blob:'].includes(source.protocol)) throw invalid(`unsupported URL protocol ${source.protocol}`);
    return http(() => urlSource(source, defaults, fetchImpl, cache));
  }
  if (source !== null && typeof source === 'object' && Object.hasOwn(source, 'files')) return filesSource(source.files, defaults);
  if (typeof source !== 'string') {
    throw invalid('source must be a directory path, URL, hub id "owner/name", Map or { files }');
  }
  if (/^https?:\/\//i.test(source)) return http(() => urlSource(new URL(source), defaults, fetchImpl, cache));
  const hubId = HUB_ID.test(source) && !source.split('/').some((p) => p === '.' || p === '..');
  if (IS_NODE) {
    const disk = { cacheDir, offline }; // the hub cache on disk (hub-cache.js)
    const hub = hubId && !/^file:/i.test(source) ? () => http(() => hubSource(source, defaults, fetchImpl, cache, hubBase, revision, disk)) : null;
    return openLocal(source, defaults, hub);
  }
  if (/^(\/|\.\.?\/|blob:)/.test(source)) {
    const here = globalThis.location?.href ?? globalThis.document?.baseURI;
    if (!here && !source.startsWith('blob:')) throw invalid(`cannot resolve relative URL ${source} without a page location`);
    return http(() => urlSource(new URL(source, here), defaults, fetchImpl, cache));
  }
  if (hubId) return http(() => hubSource(source, defaults, fetchImpl, cache, hubBase, revision));
  throw invalid(`cannot interpret source ${JSON.stringify(source)}: expected a URL, a relative URL starting with ./ or /, or a hub id "owner/name"`);
}

/** Node only: a directory path or file: URL -> dir source; else `fallback()` (a hub id) or not_found. */
async function openLocal(source, defaults, fallback) {
  let dirPath = source;
  if (source instanceof URL || /^file:/i.test(source)) dirPath = (await nodeImport('node:url')).fileURLToPath(source);
  const st = await (await nodeImport('node:fs/promises')).stat(dirPath).catch(() => null);
  throwIfAborted(defaults.signal);
  if (st?.isDirectory()) return dirSource(dirPath, defaults);
  if (st) throw invalid(`${dirPath} is a file; pass the directory that holds config.json and model.safetensors`);
  if (fallback) return fallback();
  throw new MembaError(ErrorCodes.NOT_FOUND, `no such directory: ${dirPath}`);
}
