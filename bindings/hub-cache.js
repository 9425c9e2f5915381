// hub-cache.js: Node's cache of hub downloads, in the layout of Python's huggingface_hub, so that
// files either side downloaded are reused by the other (source.js hands hub sources here in Node).
//   <cache>/models--<org>--<name>/blobs/<etag>            the file's bytes (etag: sha256 for LFS files,
//                                                         the git blob sha1 otherwise)
//   <cache>/models--<org>--<name>/refs/<revision>         the commit a branch or tag pointed at
//   <cache>/models--<org>--<name>/snapshots/<commit>/<file>  a relative symlink to the blob (a copy
//                                                         where symlinks are refused)
//   <cache>/models--<org>--<name>/.no_exist/<commit>/<file>  an empty file: known not to exist
// <cache>: { cacheDir }, else HF_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
// else ~/.cache/huggingface/hub. Revalidation, as huggingface_hub does it: one HEAD request per file
// (redirects to the CDN not followed) gives the commit (X-Repo-Commit) and the etag (X-Linked-Etag
// or ETag); a file already in snapshots/<commit>, or whose blob is there, is not downloaded again.
// A revision that is a commit hash, with the file in its snapshot, sends no request at all. When
// the hub cannot be reached, or offline (HF_HUB_OFFLINE=1 or { offline: true }), the commit comes
// from refs/<revision> and the files from its snapshot; a file that is not there is missing.
// It plugs into source.js's http source as its cache ({ match, put }) and its fetch.
// Deliberately not here: reading bodies, progress and abort (source.js), the browser (Cache API).
import { MembaError, ErrorCodes } from './errors.js';
import { nodeImport } from './node-import.js';

const COMMIT = /^[0-9a-f]{40}$/;
const HEAD_TIMEOUT_MS = 10_000;

let nodeModules = null;
async function node() {
  nodeModules ??= Promise.all(['node:fs', 'node:path', 'node:os', 'node:stream'].map(nodeImport))
    .then(([fs, path, os, stream]) => ({ fs: fs.promises, fsSync: fs, path, os, Readable: stream.Readable }));
  return nodeModules;
}

/** The hub cache folder: `explicit`, else the environment, as huggingface_hub resolves it. */
export async function hubCacheDir(explicit) {
  const { path, os } = await node();
  const expand = (p) => (p.startsWith('~') ? path.join(os.homedir(), p.slice(1)) : p);
  if (explicit) return path.resolve(expand(explicit));
  const env = process.env;
  if (env.HF_HUB_CACHE) return path.resolve(expand(env.HF_HUB_CACHE));
  if (env.HUGGINGFACE_HUB_CACHE) return path.resolve(expand(env.HUGGINGFACE_HUB_CACHE)); // the older name
  const home = env.HF_HOME ? expand(env.HF_HOME) : path.join(env.XDG_CACHE_HOME ? expand(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'huggingface');
  return path.resolve(home, 'hub');
}

/** Offline: `explicit` when a boolean, else HF_HUB_OFFLINE (1, on, yes, true). */
export function hubOffline(explicit) {
  if (typeof explicit === 'boolean') return explicit;
  return /^(1|on|yes|true)$/i.test(String(globalThis.process?.env?.HF_HUB_OFFLINE ?? '').trim());
}

/** The repo's folder name in the cache (huggingface_hub's repo_folder_name for a model). */
export function repoFolder(id) {
  return `models--${id.split('/').join('--')}`;
}

const normalizeEtag = (e) => (e ? e.replace(/^W\//, '').replace(/"/g, '') : null);
const networkError = (e) => !(e instanceof MembaError) && (e?.name === 'TypeError' || e?.name === 'TimeoutError' || e?.name === 'AbortError' || /fetch failed|ECONN|ENOTFOUND|EAI_AGAIN/.test(String(e?.message ?? e) + String(e?.cause?.code ?? '')));

async function exists(fs, p) {
  try {
    await fs.stat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The cache and fetch for one hub source.
 * @param {{ id: string, revision: string, urlPrefix: string, fetch: typeof fetch, cacheDir?: string, offline?: boolean }} o
 *   urlPrefix: the URL of the repo's files at that revision, up to and with the '/' before the file name
 * @returns {Promise<{ cache: { match(url: string): Promise<Response|undefined>, put(url: string, r: Response): Promise<void> }, fetch: typeof fetch, dir: string, offline: boolean }>}
 */
export async function openHubCache({ id, revision, urlPrefix, fetch: fetchImpl, cacheDir, offline }) {
  const { fs, fsSync, path, Readable } = await node();
  const root = path.join(await hubCacheDir(cacheDir), repoFolder(id));
  const off = hubOffline(offline);
  const pending = new Map(); // url -> { commit, etag } of a download to store (match found none)
  const missing = new Set(); // urls known not to exist (answered 404 without a request)
  const nameOf = (url) => url.slice(urlPrefix.length).split('/').map(decodeURIComponent).join('/');
  const inside = (...parts) => {
    const p = path.join(root, ...parts);
    if (!p.startsWith(root + path.sep)) throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${parts.join('/')} escapes the cache folder ${root}`);
    return p;
  };
  const snapshot = (commit, name) => inside('snapshots', commit, ...name.split('/'));
  const noExist = (commit, name) => inside('.no_exist', commit, ...name.split('/'));

  /** The commit the revision names, from the cache alone (null when unknown). */
  async function cachedCommit() {
    if (COMMIT.test(revision)) return revision;
    try {
      const c = (await fs.readFile(inside('refs', ...revision.split('/')), 'utf8')).trim();
      return COMMIT.test(c) ? c : null;
    } catch {
      return null;
    }
  }

  async function fileResponse(p) {
    const st = await fs.stat(p); // follows the symlink to the blob
    const body = Readable.toWeb(fsSync.createReadStream(p));
    return new Response(body, { status: 200, headers: { 'content-length': String(st.size) } });
  }

  /** The file from the snapshot of the cached commit, or undefined; a known-missing file is noted. */
  async function fromSnapshot(url, name) {
    const commit = await cachedCommit();
    if (!commit) return undefined;
    if (await exists(fs, snapshot(commit, name))) return fileResponse(snapshot(commit, name));
    if (await exists(fs, noExist(commit, name))) missing.add(url);
    return undefined;
  }

  /** HEAD the file (relative redirects followed, the CDN's not): { status, commit, etag, size }. */
  async function head(url) {
    let target = url;
    for (let hop = 0; hop < 5; hop++) {
      const r = await fetchImpl(target, { method: 'HEAD', redirect: 'manual', headers: { 'accept-encoding': 'identity' }, signal: AbortSignal.timeout(HEAD_TIMEOUT_MS) });
      const loc = r.headers.get('location');
      if (r.status >= 300 && r.status < 400 && loc && loc.startsWith('/') && !loc.startsWith('//')) {
        target = new URL(loc, target).href; // a renamed repo: same host
        continue;
      }
      const h = (k) => r.headers.get(k);
      const size = Number(h('x-linked-size') ?? h('content-length'));
      return { status: r.status, commit: h('x-repo-commit'), etag: normalizeEtag(h('x-linked-etag') ?? h('etag')), size: Number.isFinite(size) ? size : undefined };
    }
    return { status: 0, commit: null, etag: null };
  }

  async function writeRef(commit) {
    if (commit === revision) return;
    const ref = inside('refs', ...revision.split('/'));
    await fs.mkdir(path.dirname(ref), { recursive: true });
    const old = await fs.readFile(ref, 'utf8').catch(() => null);
    if (old !== commit) await fs.writeFile(ref, commit); // no newline, as huggingface_hub writes it
  }

  async function link(blob, snap) {
    await fs.mkdir(path.dirname(snap), { recursive: true });
    await fs.rm(snap, { force: true });
    try {
      await fs.symlink(path.relative(path.dirname(snap), blob), snap);
    } catch {
      await fs.copyFile(blob, snap); // no symlinks here (e.g. Windows without the privilege)
    }
  }

  const cache = {
    async match(url) {
      const name = nameOf(url);
      if (off) return fromSnapshot(url, name);
      if (COMMIT.test(revision) && (await exists(fs, snapshot(revision, name)))) return fileResponse(snapshot(revision, name));
      let meta;
      try {
        meta = await head(url);
      } catch (e) {
        if (networkError(e)) return fromSnapshot(url, name); // the hub is unreachable: the cached snapshot
        throw e;
      }
      if (meta.status === 404) {
        if (meta.commit && COMMIT.test(meta.commit)) {
          const p = noExist(meta.commit, name);
          await fs.mkdir(path.dirname(p), { recursive: true }).then(() => fs.writeFile(p, '')).catch(() => {});
        }
        missing.add(url);
        return undefined;
      }
      if (meta.status >= 400 || !meta.commit || !COMMIT.test(meta.commit) || !meta.etag || /[/\\]/.test(meta.etag)) return undefined; // not a hub answer: download, do not cache
      await writeRef(meta.commit).catch(() => {});
      const snap = snapshot(meta.commit, name);
      if (await exists(fs, snap)) return fileResponse(snap);
      const blob = inside('blobs', meta.etag);
      if (await exists(fs, blob)) {
        await link(blob, snap);
        return fileResponse(snap);
      }
      pending.set(url, meta);
      return undefined;
    },

    async put(url, response) {
      const meta = pending.get(url);
      pending.delete(url);
      if (!meta) return;
      const bytes = new Uint8Array(await response.arrayBuffer());
      const blob = inside('blobs', meta.etag);
      await fs.mkdir(path.dirname(blob), { recursive: true });
      const tmp = `${blob}.incomplete`;
      try {
        await fs.writeFile(tmp, bytes);
        await fs.rename(tmp, blob);
      } catch (e) {
        await fs.rm(tmp, { force: true }).catch(() => {});
        throw e;
      }
      await link(blob, snapshot(meta.commit, nameOf(url)));
    },
  };

  /** The source's fetch: known-missing files and offline misses are 404s without a request. */
  const fetchThrough = (url, init) => {
    if (missing.has(url) || (off && String(url).startsWith(urlPrefix))) return Promise.resolve(new Response(null, { status: 404 }));
    return fetchImpl(url, init);
  };

  return { cache, fetch: fetchThrough, dir: root, offline: off };
}

/** Every file of every model repo in the cache: { repo, revision (the commit), refs, file, size, path }. */
export async function listHubCache(cacheDir) {
  const { fs, path } = await node();
  const dir = await hubCacheDir(cacheDir);
  const out = [];
  const repos = await fs.readdir(dir).catch(() => []);
  for (const folder of repos.filter((f) => f.startsWith('models--')).sort()) {
    const repo = folder.slice('models--'.length).split('--').join('/');
    const refs = {};
    const walkRefs = async (d, prefix) => {
      for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
        if (e.isDirectory()) await walkRefs(path.join(d, e.name), `${prefix}${e.name}/`);
        else refs[`${prefix}${e.name}`] = (await fs.readFile(path.join(d, e.name), 'utf8')).trim();
      }
    };
    await walkRefs(path.join(dir, folder, 'refs'), '');
    const snaps = path.join(dir, folder, 'snapshots');
    for (const commit of (await fs.readdir(snaps).catch(() => [])).sort()) {
      const walk = async (d, prefix) => {
        for (const e of await fs.readdir(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          if (e.isDirectory()) await walk(p, `${prefix}${e.name}/`);
          else {
            const st = await fs.stat(p).catch(() => null);
            if (st) out.push({ repo, revision: commit, refs: Object.keys(refs).filter((r) => refs[r] === commit), file: `${prefix}${e.name}`, size: st.size, path: p });
          }
        }
      };
      await walk(path.join(snaps, commit), '');
    }
  }
  return out;
}

/** Removes a repo's folder from the cache; resolves with the number of snapshot files it had. */
export async function deleteHubRepo(id, cacheDir) {
  const { fs, path } = await node();
  const dir = await hubCacheDir(cacheDir);
  const n = (await listHubCache(cacheDir)).filter((e) => e.repo === id).length;
  const folder = path.join(dir, repoFolder(id));
  if (path.dirname(folder) !== dir) throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${id} is not a hub id`);
  await fs.rm(folder, { recursive: true, force: true });
  return n;
}
