#!/usr/bin/env bash
# Builds {{name}}.wasm from app.py with componentize-py (installed from
# PyPI with pip when missing). About 10 s; the component is ~18 MB because
# it carries the Python interpreter.
set -euo pipefail
cd "$(dirname "$0")"

version=0.25.1
cpy() { python3 -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "$@"; }
if ! cpy --version 2>/dev/null | grep -qx "componentize-py $version"; then
    echo "+ python3 -m pip install componentize-py==$version" >&2
    python3 -m pip install --quiet --disable-pip-version-check componentize-py=="$version"
fi

# Into a temporary file first, so a failed build never leaves half a plugin.
trap 'rm -f {{name}}.wasm.tmp' EXIT
cpy --quiet -d wit -w probe componentize -p . -o {{name}}.wasm.tmp app
mv {{name}}.wasm.tmp {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(stat -c %s {{name}}.wasm) bytes)" >&2
