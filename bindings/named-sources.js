// named-sources.js: two kinds of model source that source.js hands over to here:
//   'default'          the embedded default model (models/default): a directory in Node; in a
//                      browser the package's own files next to bindings/ (as served unbundled, from
//                      a CDN or through an import map). Bundlers do not see this URL: under one,
//                      import { defaultModel } from 'memba-wasm/default-model' (models/default/model.js).
//   { urls, description? }  files named one by one: { 'config.json': url, ... } (strings or URLs,
//                      e.g. as a bundler rewrote them, data: URLs included); names not listed are
//                      missing. file: URLs of one folder (Node) read that folder.
// Deliberately not here: fetching, caching and progress (source.js's http and directory sources).
import { MembaError, ErrorCodes } from './errors.js';
import { IS_NODE } from './env.js';
import { nodeImport } from './node-import.js';

// in variables, not literals: a bundler must not copy 14.7 MB of weights into every app that
// imports the package (defaultModel is the entry for that)
const DEFAULT_DIR = '../models/default/';
const DEFAULT_FILES = ['config.json', 'model.safetensors', 'tokenizer.json'];
const MISSING = 'memba-missing:'; // the URL of a name the map does not list: answered 404 here

/** What 'default' means here: a directory path (Node) or a { urls, description } source. */
export async function defaultModelSource() {
  const here = import.meta.url; // not new URL(x, import.meta.url): webpack would try to bundle x
  const dir = new URL(DEFAULT_DIR, here);
  if (IS_NODE && dir.protocol === 'file:') return (await nodeImport('node:url')).fileURLToPath(dir);
  if (!/^https?:$/.test(dir.protocol)) {
    // a bundler rewrote import.meta.url (webpack: the file: path it was built from)
    throw new MembaError(ErrorCodes.NOT_FOUND, "'default' names the package's own files, which this bundle does not serve: load defaultModel, exported by memba-wasm/default-model (README, \"In the browser\")");
  }
  return {
    description: `the embedded default model at ${dir.href} (under a bundler, load defaultModel, exported by memba-wasm/default-model)`,
    urls: Object.fromEntries(DEFAULT_FILES.map((f) => [f, new URL(f, dir).href])),
  };
}

/**
 * A { urls } source. `make` holds source.js's constructors: http(kind, description, urlFor, fetch)
 * and dir(path).
 */
export async function urlMapSource(source, make) {
  const { urls } = source;
  const entries = urls instanceof Map ? [...urls] : urls !== null && typeof urls === 'object' ? Object.entries(urls) : null;
  if (!entries || entries.length === 0) throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'urls must be a non-empty object (or Map) of file name -> URL');
  const map = new Map();
  for (const [name, u] of entries) {
    if (typeof u !== 'string' && !(u instanceof URL)) throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `urls[${JSON.stringify(name)}] must be a URL or a string`);
    let href;
    try {
      href = new URL(String(u), globalThis.location?.href).href;
    } catch (e) {
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `urls[${JSON.stringify(name)}]: cannot resolve ${u}`, { cause: e });
    }
    map.set(name, href);
  }
  const description = typeof source.description === 'string' ? source.description : `files at ${[...map.values()].join(', ')}`;
  const hrefs = [...map.values()];
  if (hrefs.every((h) => h.startsWith('file:'))) {
    // one folder on disk (Node): the map's names must be the files' paths inside it
    const [name0, href0] = [...map][0];
    const dir = href0.slice(0, href0.length - encodeURI(name0).length);
    if (!IS_NODE || ![...map].every(([n, h]) => new URL(n, dir).href === h))
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'file: URLs work in Node only, and must name files of one folder by their paths inside it');
    return make.dir((await nodeImport('node:url')).fileURLToPath(dir));
  }
  const urlFor = (name) => map.get(name) ?? MISSING + name;
  const fetchMissing = (fetchImpl) => (url, init) => (String(url).startsWith(MISSING) ? Promise.resolve(new Response(null, { status: 404 })) : fetchImpl(url, init));
  return make.http('url', description, urlFor, fetchMissing);
}
