// load-progress.js: one progress bar for a whole Mamba.load, in bytes. The phases, in order:
//   download  bytes fetched from a URL or the hub (status 'download')
//   read      bytes read from disk, memory or a cache (status 'read', or 'cache' for the browser's
//             Cache API and the Hugging Face cache)
//   convert   tensor bytes converted to float32 into the engine (status 'convert')
//   upload    bytes copied to the GPU (a model on WebGPU only; status 'upload')
//   ready     the end: status 'done' (loaded === total) and then status 'ready'
// `loaded` only grows. `total` is undefined until the size of every weight file is known; from then
// on it counts the bytes to read plus an estimate of the bytes to convert (the size of the files
// read, which is never less than the tensors' bytes), replaced by the exact figure once the
// checkpoint is parsed, so loaded / total never moves backwards (except for the few metadata bytes
// read before the weights' sizes are known, when total is still undefined).
// Deliberately not here: reading files (source.js aggregates each read call) or converting.

const byOptions = new WeakMap(); // Mamba.load's options object -> its LoadProgress (gpu.js looks it up)

export class LoadProgress {
  /** Starts the progress of one load; null without an onProgress callback. */
  static start(opts) {
    if (typeof opts?.onProgress !== 'function') return null;
    const p = new LoadProgress(opts.onProgress);
    byOptions.set(opts, p);
    return p;
  }

  /** The progress started for these options, if any (gpu.js: upload, ready). */
  static of(opts) {
    return (opts && byOptions.get(opts)) ?? null;
  }

  constructor(callback) {
    this.callback = callback;
    this.readLoaded = 0;
    this.readTotal = undefined; // undefined until the weights' sizes are known
    this.convertLoaded = 0;
    this.convertTotal = undefined; // undefined: estimated as readTotal
    this.uploadLoaded = 0;
    this.uploadTotal = 0;
    this.weightsSeen = false;
    /** readCheckpoint's onProgress: aggregate read events over every file of the checkpoint */
    this.onRead = (e) => this._read(e);
  }

  get loaded() {
    return this.readLoaded + this.convertLoaded + this.uploadLoaded;
  }

  get total() {
    if (this.readTotal === undefined) return undefined;
    return this.readTotal + (this.convertTotal ?? this.readTotal) + this.uploadTotal;
  }

  _emit(phase, status, file) {
    this.callback({ phase, status, file, loaded: this.loaded, total: this.total });
  }

  _read(e) {
    if (e.status === 'done') { // the end of reading: every size known
      this.readLoaded = e.loaded;
      this.readTotal = e.total ?? e.loaded;
      return;
    }
    this.readLoaded = e.loaded;
    if (/\.safetensors$/.test(e.file ?? '') && e.total !== undefined) this.weightsSeen = true;
    this.readTotal = this.weightsSeen ? e.total : undefined;
    this._emit(e.status === 'download' ? 'download' : 'read', e.status, e.file);
  }

  /** The checkpoint is parsed: the exact bytes to convert, and to upload (a model on WebGPU). */
  planned(convertBytes, uploadBytes = 0) {
    this.convertTotal = convertBytes;
    this.uploadTotal = uploadBytes;
    if (this.readTotal === undefined) this.readTotal = this.readLoaded;
  }

  /** `bytes` more converted (of tensor `file`); an event when `emit` */
  convert(file, bytes, emit) {
    this.convertLoaded += bytes;
    if (emit) this._emit('convert', 'convert', file);
  }

  upload(bytes, file = null) {
    this.uploadLoaded += bytes;
    this._emit('upload', 'upload', file);
  }

  /** The model can be used: 'done' (every byte counted) then 'ready'. */
  ready() {
    // what was planned but not done (no GPU after all) is dropped, so loaded === total
    this.uploadTotal = this.uploadLoaded;
    this.convertTotal = this.convertLoaded;
    if (this.readTotal === undefined || this.readTotal < this.readLoaded) this.readTotal = this.readLoaded;
    this._emit('ready', 'done', null);
    this._emit('ready', 'ready', null);
  }
}
