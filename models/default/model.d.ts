/**
 * The embedded default model as a source for Mamba.load.
 * @module memba-wasm/default-model
 */
/** The embedded default model as a source for Mamba.load (package export 'memba-wasm/default-model'). */
export declare const defaultModel: Readonly<{ description: string; urls: Readonly<Record<'config.json' | 'model.safetensors' | 'tokenizer.json', string>> }>;
export default defaultModel;
