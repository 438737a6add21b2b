#!/usr/bin/env bash
# Builds {{name}}.wasm from probe.js and the modules it imports (logic.js)
# with componentize-js (installed into ./node_modules with npm when
# missing, or taken from $COMPONENTIZE_JS). The component is ~12 MB: it
# carries the JavaScript engine.
#
# No bundling step: componentize-js 0.23 follows probe.js's relative
# imports (`./logic.js`) itself. It evaluates the modules once at build
# time, with this folder as their root, and the component carries the
# result; nothing is read from this folder when the plugin runs.
set -euo pipefail
cd "$(dirname "$0")"

version=0.23.0
bin="${COMPONENTIZE_JS:-node_modules/.bin/componentize-js}"
if [[ "$("$bin" --version 2>/dev/null || true)" != "$version" ]]; then
    echo "+ npm install @bytecodealliance/componentize-js@$version" >&2
    npm install --no-save --no-audit --no-fund --loglevel=error \
        "@bytecodealliance/componentize-js@$version"
    bin=node_modules/.bin/componentize-js
fi

# The host grants no wasi:http: leave out the engine's fetch() and HTTP
# handler (the plugin's HTTP is the host's `http` capability). Into a
# temporary file first, so a failed build never leaves half a plugin.
trap 'rm -f {{name}}.tmp.wasm' EXIT
"$bin" probe.js --wit wit --world-name probe --disable http fetch-event \
    --out {{name}}.tmp.wasm >/dev/null
mv {{name}}.tmp.wasm {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(stat -c %s {{name}}.wasm) bytes)" >&2
