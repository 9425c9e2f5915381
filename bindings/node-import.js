// node-import.js: imports a Node built-in (or the Node-only npm package 'webgpu') so that bundlers
// neither resolve nor bundle it: the specifier is a variable, which Vite/Rolldown, webpack, esbuild
// and Rollup all leave alone (the comments silence Vite's and webpack's warnings about it). Every
// call site runs only where env.js says Node, so a browser bundle never evaluates one.
// Deliberately not here: deciding when to call it (the call sites check IS_NODE).

/** @param {string} specifier e.g. 'node:fs/promises' @returns {Promise<any>} */
export const nodeImport = (specifier) => import(/* webpackIgnore: true */ /* @vite-ignore */ specifier);
