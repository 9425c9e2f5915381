#!/usr/bin/env bash
# build.sh: the one build entry of memba-wasm.
#   ./build.sh            install what is missing, build the WASM module and the native library
#   ./build.sh test       build, then run every test (native C tests under ASan+UBSan, node --test)
#   ./build.sh generate   build, then run the main job (a generation from a model; args pass on)
#   ./build.sh bench      build, then run the benchmark (WASM vs native, appends to bench/results.md);
#                         ./build.sh bench --webgpu: WebGPU vs WASM (scan GB/s, prefill tokens/s)
#                         ./build.sh bench --dtypes: fp32 / fp16 / q8 weights, speed and memory
#                         ./build.sh bench --llama BUILD: llama.cpp's llama-bench on the same weights
#   ./build.sh demo       build, then serve the browser demo on http://127.0.0.1:8080/demo/
#   ./build.sh fuzz [S]   libFuzzer + ASan/UBSan on the C entry points (tests/fuzz/), S seconds in all (60)
#   ./build.sh wasm | native | deps | clean
# Unknown arguments are an error.
set -euo pipefail
cd "$(dirname "$0")"

OUT=dist
BUILD=build
SRC=(src/error.c src/ref_ops.c
  src/core/weights.c src/core/block.c src/core/state.c src/core/adapter.c src/core/init.c src/core/pool.c
  src/models/lm.c
  src/train/train.c src/train/workspace.c src/train/optim.c
  src/ops/matmul.c src/ops/rmsnorm.c src/ops/conv1d.c src/ops/delta.c src/ops/scan.c src/ops/gate.c
  src/ops/lora.c src/ops/lim.c src/ops/xent.c src/ops/convert.c src/ops/qmatmul.c)
EXPORTS=(mb_last_error mb_model_new mb_model_new_typed mb_model_free mb_model_config mb_model_param
  mb_model_param_dtype mb_model_param_raw mb_model_param_write mb_model_finalize mb_model_init_random
  mb_model_weight_bytes mb_model_activation_bytes mb_model_trim mb_forward mb_state_new
  mb_state_free mb_state_reset mb_state_copy mb_state_batch mb_state_pos mb_state_data
  mb_state_set_pos mb_step mb_score mb_set_simd mb_get_simd mb_malloc mb_free
  mb_adapter_new mb_adapter_free mb_adapter_param mb_adapter_init mb_adapter_causal
  mb_model_set_adapter mb_adapter_merge mb_adapter_unmerge mb_adapter_merged mb_inspect
  mb_train_backward mb_adapter_zero_grad mb_adapter_grad mb_adapter_block mb_adapter_grad_norm
  mb_adamw_step mb_adapter_reset_optimizer mb_train_set_budget mb_train_stored_layers
  mb_ref_selective_scan mb_ref_conv1d_silu mb_ref_softplus mb_ref_matmul mb_ref_rmsnorm mb_ref_gate mb_ref_lim
  mb_split_begin mb_split_pre mb_split_mid mb_split_post mb_split_end mb_split_end_score
  mb_split_buffer mb_layer_A mb_state_ssm_ptr mb_op_selective_scan mb_set_threads mb_get_threads mb_pool_selftest)

# Flags, each with its reason:
CFLAGS_COMMON=(
  -std=c11            # plain C11, same source natively and in WASM
  -Wall -Wextra       # warnings are bugs waiting
  -Werror             # ... so they fail the build
)
WASM_FLAGS=(
  -O3                          # speed
  -msimd128                    # WASM SIMD: the f32x4 kernels in src/simd.h
  -sMODULARIZE=1 -sEXPORT_ES6=1  # an ES module factory: import createMembaModule from dist/memba.mjs
  -sEXPORT_NAME=createMembaModule
  -sENVIRONMENT=web,worker     # Node gets { wasmBinary } from the bindings (emscripten's node ESM output breaks on Node 20)
  -sALLOW_MEMORY_GROWTH=1      # models of any size up to the limit below
  -sMAXIMUM_MEMORY=4GB         # the whole wasm32 address space (bindings treat pointers as unsigned)
  -sINITIAL_MEMORY=16MB        # small start; grows with the model
  -sABORTING_MALLOC=0          # malloc returns NULL on OOM so the C core reports MB_ERR_OOM
  -sFILESYSTEM=0               # no emulated FS: bytes come from JS
  -sTOTAL_STACK=1MB            # the core uses little stack
  -sEXPORTED_RUNTIME_METHODS=['HEAPU8','HEAPF32','HEAP32','UTF8ToString']
)
NATIVE_CC=clang  # the LLVM that emcc uses, so native and WASM get the same vectoriser (gcc 12 ran the f16 decode kernel at 0.7x, measured)
NATIVE_FLAGS=(
  -O3                 # speed
  -march=x86-64-v2    # SSE4.2, the level V8 needs for WASM SIMD: the same 128-bit instructions (sign extension is pmovsx)
  -pthread            # the thread pool (src/core/pool.c)
)
THREAD_FLAGS=(
  -pthread                              # the threaded build: a SharedArrayBuffer heap and Web Workers
  -sPTHREAD_POOL_SIZE='(Module.membaPoolSize|0)'  # workers made at start-up, as many as bindings/engine.js asks for
  -sPTHREAD_POOL_SIZE_STRICT=2          # a thread past the pool is an error (EAGAIN), never a deadlock
  -Wno-pthreads-mem-growth              # the JS views are re-made after growth; the C core never grows the heap from a worker
)
SAN_FLAGS=(
  -O1 -g -fno-omit-frame-pointer
  -fsanitize=address,undefined -fno-sanitize-recover=all  # ASan (+LeakSanitizer) and UBSan, any report fails
  -pthread                                                 # the thread pool
)

need_root() { [ "$(id -u)" = 0 ] || { echo "build.sh: $1 is missing; install it (as root: apt-get install $2)" >&2; exit 1; }; }

apt_install() {
  need_root "$1" "$2"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $2 >/dev/null
}

deps() {
  command -v node >/dev/null || apt_install node "nodejs npm"
  command -v npm >/dev/null || apt_install npm npm
  command -v emcc >/dev/null || apt_install emcc emscripten
  command -v clang >/dev/null || apt_install clang clang
  # LeakSanitizer/ASan runtimes for clang
  if ! echo 'int main(void){return 0;}' | clang -x c -fsanitize=address,undefined -o /tmp/memba-san-check - 2>/dev/null; then
    apt_install "clang sanitizer runtime" "libclang-rt-14-dev"
  fi
  rm -f /tmp/memba-san-check
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

# What only the tests need: Mesa's Vulkan (WebGPU in Node) and a real browser.
test_deps() {
  # WebGPU in Node: the npm package `webgpu` (Dawn) finds Mesa's lavapipe (a CPU Vulkan driver) only
  # in the Mesa of bookworm-backports; tests/webgpu.test.mjs skips, saying so, without an adapter
  if [ "$(id -u)" = 0 ] && grep -q '^12' /etc/debian_version 2>/dev/null &&
     ! dpkg -s mesa-vulkan-drivers 2>/dev/null | grep -q '^Version: .*bpo'; then
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        > /etc/apt/sources.list.d/bookworm-backports.sources
      APT_UPDATED=
    fi
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers >/dev/null
  fi
  # a real browser for the demo's end-to-end test (tests/browser.test.mjs skips, saying so, without one)
  if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ]; then apt_install chromium chromium; fi
}

stale() { # stale OUTPUT INPUTS...: true when OUTPUT is missing or older than any input
  local out=$1; shift
  [ -f "$out" ] || return 0
  for f in "$@"; do [ "$f" -nt "$out" ] && return 0; done
  return 1
}

build_wasm() {
  mkdir -p "$OUT"
  local inputs=("${SRC[@]}" src/*.h src/*/*.h build.sh)
  stale "$OUT/memba.mjs" "${inputs[@]}" || return 0
  local exp
  exp=$(printf "'_%s'," "${EXPORTS[@]}")
  # appended to memba.mjs: the wasm's URL written beside it, in the form bundlers detect (Vite and
  # webpack copy the file and rewrite the URL); bindings/engine.js fetches it with a clear error
  mkdir -p "$BUILD"
  # (moduleUrl: where memba.mjs itself is, which tells bindings/assets.js whether it is bundled)
  printf '%s\n' "export const wasmUrl = () => new URL('memba.wasm', import.meta.url);" \
    "export const moduleUrl = () => import.meta.url;" > "$BUILD/memba-post.js"
  echo "build.sh: emcc -> $OUT/memba.mjs + memba.wasm"
  NODE_PATH=${NODE_PATH:-/usr/share/nodejs} emcc "${CFLAGS_COMMON[@]}" "${WASM_FLAGS[@]}" \
    --extern-post-js "$BUILD/memba-post.js" \
    -sEXPORTED_FUNCTIONS="[${exp%,}]" "${SRC[@]}" -o "$OUT/memba.mjs"
  # the threaded build (bindings/engine.js picks it where threads are available)
  printf '%s\n' "export const wasmUrl = () => new URL('memba-threads.wasm', import.meta.url);" \
    "export const workerUrl = () => new URL('memba-threads.worker.js', import.meta.url);" \
    "export const moduleUrl = () => import.meta.url;" > "$BUILD/memba-threads-post.js"
  echo "build.sh: emcc -pthread -> $OUT/memba-threads.mjs + .wasm + .worker.js"
  NODE_PATH=${NODE_PATH:-/usr/share/nodejs} emcc "${CFLAGS_COMMON[@]}" "${WASM_FLAGS[@]}" "${THREAD_FLAGS[@]}" \
    --extern-post-js "$BUILD/memba-threads-post.js" -sEXPORT_NAME=createMembaThreadsModule \
    -sEXPORTED_FUNCTIONS="[${exp%,}]" "${SRC[@]}" -o "$OUT/memba-threads.mjs"
}

# The copies used inside bundles that copy no files (esbuild, Rollup): memba.wasm in base64, the
# WGSL kernels by name (web/webgpu.js), and worker.js bundled with its imports (esbuild, minified;
# it never starts a worker itself, so worker-inline.js stays out of it) as one string, all three
# loaded by dynamic import only there (bindings/assets.js), so other builds never fetch them; and
# the default model's files as data: URLs, which package.json's exports give to bundlers that set
# none of the conditions node, webpack, development, production (models/default/model-inline.js).
build_inline() {
  if stale "$OUT/memba-wasm-inline.js" "$OUT/memba.wasm"; then
    echo "build.sh: memba.wasm -> $OUT/memba-wasm-inline.js (base64)"
    node -e 'const fs = require("fs"); const [src, dst] = process.argv.slice(1);
      fs.writeFileSync(dst, "// memba.wasm in base64 (build.sh): for bundles that do not copy memba.wasm (bindings/assets.js)\nexport default \"" + fs.readFileSync(src).toString("base64") + "\";\n");' \
      "$OUT/memba.wasm" "$OUT/memba-wasm-inline.js"
  fi
  if stale "$OUT/kernels-inline.js" web/kernels/*.wgsl; then
    echo "build.sh: web/kernels/*.wgsl -> $OUT/kernels-inline.js"
    node -e 'const fs = require("fs"), path = require("path"); const [dst, ...srcs] = process.argv.slice(1);
      const o = Object.fromEntries(srcs.map((f) => [path.basename(f, ".wgsl"), fs.readFileSync(f, "utf8")]));
      fs.writeFileSync(dst, "// web/kernels/*.wgsl by name (build.sh): for bundles that do not copy them (web/webgpu.js)\nexport default " + JSON.stringify(o, null, 1) + ";\n");' \
      "$OUT/kernels-inline.js" web/kernels/*.wgsl
  fi
  if stale "$OUT/default-model-inline.js" models/default/config.json models/default/model.safetensors models/default/tokenizer.json; then
    echo "build.sh: models/default -> $OUT/default-model-inline.js (data: URLs)"
    node -e 'const fs = require("fs"), path = require("path"); const [dst, ...srcs] = process.argv.slice(1);
      const type = (f) => (f.endsWith(".json") ? "application/json" : "application/octet-stream");
      const o = Object.fromEntries(srcs.map((f) => [path.basename(f), "data:" + type(f) + ";base64," + fs.readFileSync(f).toString("base64")]));
      fs.writeFileSync(dst, "// the default model'"'"'s files as data: URLs by name (build.sh): memba-wasm/default-model for bundlers that copy no files (models/default/model-inline.js)\nexport default " + JSON.stringify(o, null, 1) + ";\n");' \
      "$OUT/default-model-inline.js" models/default/config.json models/default/model.safetensors models/default/tokenizer.json
  fi
  if stale "$OUT/memba-threads-inline.js" "$OUT/memba-threads.mjs" "$OUT/memba-threads.wasm" "$OUT/memba-threads.worker.js"; then
    echo "build.sh: memba-threads.* -> $OUT/memba-threads-inline.js (the glue, its worker, the wasm in base64)"
    node -e 'const fs = require("fs"); const [glue, worker, wasm, dst] = process.argv.slice(1);
      // from a blob: URL, which is no base for a URL: the pthread workers instantiate the glue
      // without locateFile (they get the compiled module), where it would resolve the wasm URL
      const W = "new URL(\"memba-threads.wasm\",import.meta.url).toString()";
      const g = fs.readFileSync(glue, "utf8");
      if (g.split(W).length !== 2) { console.error("build.sh: memba-threads.mjs no longer resolves its wasm as expected"); process.exit(1); }
      const o = { glue: g.replace(W, "\"memba-threads.wasm\""), worker: fs.readFileSync(worker, "utf8"), wasm: fs.readFileSync(wasm).toString("base64") };
      fs.writeFileSync(dst, "// the threaded build (build.sh): for bundles, which do not serve dist/memba-threads.* (bindings/engine.js runs it from blob: URLs)\nexport default " + JSON.stringify(o) + ";\n");' \
      "$OUT/memba-threads.mjs" "$OUT/memba-threads.worker.js" "$OUT/memba-threads.wasm" "$OUT/memba-threads-inline.js"
  fi
  if stale "$OUT/worker-inline.js" "$OUT/memba-threads-inline.js" "$OUT/kernels-inline.js" "$OUT/memba-wasm-inline.js" "$OUT/memba.mjs" bindings/*.js web/*.js package-lock.json build.sh; then
    echo "build.sh: esbuild bindings/worker.js -> $OUT/worker-inline.js (one string)"
    node_modules/.bin/esbuild bindings/worker.js --bundle --format=esm --platform=browser --minify \
      --external:*worker-inline.js --log-level=warning --outfile="$BUILD/worker-bundle.js"
    node -e 'const fs = require("fs"); const [src, dst] = process.argv.slice(1);
      fs.writeFileSync(dst, "// bindings/worker.js bundled with its imports (build.sh): the worker for bundles that do not copy worker.js (bindings/assets.js)\nexport default " + JSON.stringify(fs.readFileSync(src, "utf8")) + ";\n");' \
      "$BUILD/worker-bundle.js" "$OUT/worker-inline.js"
  fi
}

build_native() {
  mkdir -p "$BUILD"
  local inputs=("${SRC[@]}" src/*.h src/*/*.h build.sh)
  if stale "$BUILD/libmemba.a" "${inputs[@]}"; then
    echo "build.sh: $NATIVE_CC -> $BUILD/libmemba.a"
    rm -f "$BUILD"/*.o "$BUILD/libmemba.a" # ar would keep members of files that moved
    for f in "${SRC[@]}"; do
      "$NATIVE_CC" "${CFLAGS_COMMON[@]}" "${NATIVE_FLAGS[@]}" -c "$f" -o "$BUILD/$(basename "${f%.c}").o"
    done
    ar rcs "$BUILD/libmemba.a" "$BUILD"/*.o
  fi
  if stale "$BUILD/bench_native" bench/bench_native.c "$BUILD/libmemba.a"; then
    echo "build.sh: $NATIVE_CC -> $BUILD/bench_native"
    "$NATIVE_CC" "${CFLAGS_COMMON[@]}" "${NATIVE_FLAGS[@]}" bench/bench_native.c "$BUILD/libmemba.a" -lm -o "$BUILD/bench_native"
  fi
  if stale "$BUILD/read_bw" bench/read_bw.c; then
    "$NATIVE_CC" "${CFLAGS_COMMON[@]}" "${NATIVE_FLAGS[@]}" bench/read_bw.c -o "$BUILD/read_bw"
  fi
  for t in tests/c/test_*.c; do
    local name
    name=$(basename "${t%.c}")
    if stale "$BUILD/$name" "$t" tests/c/*.h "${inputs[@]}"; then
      echo "build.sh: clang (asan+ubsan) -> $BUILD/$name"
      clang "${CFLAGS_COMMON[@]}" "${SAN_FLAGS[@]}" "$t" "${SRC[@]}" -lm -o "$BUILD/$name"
    fi
  done
}

build_all() { deps; build_wasm; build_inline; build_native; }

# The libFuzzer harnesses (tests/fuzz/fuzz_*.c), S seconds split between them. Each starts from its
# committed seed corpus (tests/fuzz/corpus/NAME) plus what earlier runs here found (build/fuzz/NAME);
# a crash leaves its input in build/fuzz/ and fails. MB_ALLOC_LIMIT turns a huge but well-formed
# size into the OOM path instead of a real multi-GB request.
run_fuzz() {
  local total=$1 harnesses=(tests/fuzz/fuzz_*.c)
  [[ "$total" =~ ^[0-9]+$ ]] && [ "$total" -ge 1 ] || { echo "build.sh fuzz: SECONDS must be a positive integer" >&2; exit 2; }
  local each=$(( (total + ${#harnesses[@]} - 1) / ${#harnesses[@]} ))
  mkdir -p "$BUILD/fuzz"
  for h in "${harnesses[@]}"; do
    local name bin
    name=$(basename "${h%.c}"); name=${name#fuzz_}; bin="$BUILD/fuzz/fuzz_$name"
    if stale "$bin" "$h" tests/fuzz/fuzz.h "${SRC[@]}" src/*.h src/*/*.h build.sh; then
      echo "build.sh: clang (libFuzzer + asan + ubsan) -> $bin"
      clang "${CFLAGS_COMMON[@]}" -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -pthread -DMB_ALLOC_LIMIT='((size_t)256 << 20)' "$h" "${SRC[@]}" -lm -o "$bin"
    fi
    mkdir -p "$BUILD/fuzz/$name"
    echo "build.sh: fuzz $name for ${each}s"
    ( cd "$BUILD/fuzz" && ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
      "./fuzz_$name" -max_total_time="$each" -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 \
      -artifact_prefix="$name-" "$name" "../../tests/fuzz/corpus/$name" 2>&1 |
      grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==ERROR|SUMMARY|.*Test unit written)' ) ||
      true
    # A slow unit (over libFuzzer's 10 s report threshold, under the 20 s timeout) is a warning,
    # not a memory bug: it is kept in build/fuzz/slow/ to look at. Timeouts and crashes fail.
    local f
    for f in "$BUILD/fuzz/$name-slow-unit-"*; do
      [ -e "$f" ] || continue
      mkdir -p "$BUILD/fuzz/slow"; mv "$f" "$BUILD/fuzz/slow/"
      echo "build.sh: fuzz $name: warning: an input ran over 10 s (not a failure): $BUILD/fuzz/slow/$(basename "$f")" >&2
    done
    if ls "$BUILD/fuzz/$name-"* >/dev/null 2>&1; then
      echo "build.sh: fuzz $name found a failing input: $(ls "$BUILD/fuzz/$name-"*)" >&2
      exit 1
    fi
  done
}

run_tests() {
  build_all
  test_deps
  # The native C tests run inside node --test (tests/native.test.mjs), so one runner reports all.
  node --test --test-reporter=tap tests/
}

case "${1:-}" in
  "") build_all ;;
  test) [ $# -eq 1 ] || { echo "build.sh test takes no arguments" >&2; exit 2; }; run_tests ;;
  generate) shift; build_all; node bindings/cli.js generate "$@" ;;
  bench) shift; build_all
    if [ "${1:-}" = --webgpu ]; then shift; node bench/bench-webgpu.mjs "$@";
    elif [ "${1:-}" = --dtypes ]; then shift; node bench/bench-dtypes.mjs "$@";
    elif [ "${1:-}" = --llama ]; then node bench/llama-cpp.mjs "$@";
    elif [ "${1:-}" = --threads ]; then shift; node bench/bench-threads.mjs "$@";
    else node bench/bench.mjs "$@"; fi ;;
  demo) shift; build_all; node demo/serve.mjs "$@" ;;
  fuzz) [ $# -le 2 ] || { echo "build.sh fuzz takes one argument (seconds)" >&2; exit 2; }; deps; run_fuzz "${2:-60}" ;;
  wasm) deps; build_wasm; build_inline ;;
  native) deps; build_native ;;
  deps) deps; test_deps ;;
  clean) rm -rf "$OUT" "$BUILD" ;;
  -h|--help|help) sed -n '2,13p' "$0" ;;
  *) echo "build.sh: unknown argument '$1' (try ./build.sh help)" >&2; exit 2 ;;
esac
