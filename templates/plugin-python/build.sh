#!/usr/bin/env bash
# Builds {{name}}.wasm from app.py and the modules it imports (logic.py)
# with componentize-py. About 10 s; the component is ~18 MB because it
# carries the Python interpreter.
#
# componentize-py is installed once per user, never into the system Python
# (Debian and Ubuntu refuse that: externally-managed-environment, PEP 668):
# into a venv made by `python3 -m venv`, or, where there is no venv
# (Debian without python3-venv), with `pip install --target` into a folder
# put on PYTHONPATH. WASMPROBE_PY_NO_VENV=1 takes the second way even when
# a venv could be made. Both live in ${XDG_CACHE_HOME:-~/.cache}/wasmprobe-tools,
# not in .../wasmprobe: that is the engine's default compile cache, whose
# cleanup deletes every file it does not recognise.
set -euo pipefail
cd "$(dirname "$0")"

version=0.25.1
tools="${XDG_CACHE_HOME:-$HOME/.cache}/wasmprobe-tools"
venv="$tools/componentize-py-$version"
lib="$tools/componentize-py-$version-target"
staging=""
trap 'rm -rf "$staging" {{name}}.wasm.tmp' EXIT

# Runs componentize-py with the interpreter in "${py[@]}".
cpy() { "${py[@]}" -c 'import sys; from componentize_py import script; sys.argv[0] = "componentize-py"; sys.exit(script())' "$@"; }
installed() { cpy --version 2>/dev/null | grep -qx "componentize-py $version"; }

use_venv() { py=("$1/bin/python3"); }
use_lib() { py=(env PYTHONPATH="$1" python3); }

if [[ -z "${WASMPROBE_PY_NO_VENV:-}" ]] && use_venv "$venv" && installed; then
    :
elif [[ -d "$lib/componentize_py" ]] && use_lib "$lib" && installed; then
    :
else
    # Installed into a staging folder and renamed into place, so an
    # interrupted install is never taken for a finished one and two builds
    # installing at once do not mix their files.
    mkdir -p "$tools"
    staging="$(mktemp -d "$tools/.install.XXXXXX")"
    if [[ -n "${WASMPROBE_PY_NO_VENV:-}" ]]; then
        why="WASMPROBE_PY_NO_VENV is set"
    elif python3 -m venv "$staging" >/dev/null 2>&1; then
        why=""
    else
        why="python3 -m venv is unavailable"
    fi
    if [[ -z "$why" ]]; then
        echo "+ installing componentize-py $version into the venv $venv" >&2
        "$staging/bin/python3" -m pip install --quiet --disable-pip-version-check \
            "componentize-py==$version"
        dest="$venv"
        use_venv "$venv"
    else
        echo "+ installing componentize-py $version into $lib with pip --target ($why)" >&2
        if ! python3 -m pip --version >/dev/null 2>&1; then
            echo "build.sh: python3 has neither venv nor pip (Debian, Ubuntu: apt install python3-venv)" >&2
            exit 1
        fi
        rm -rf "$staging" && mkdir "$staging"
        python3 -m pip install --quiet --disable-pip-version-check \
            --target "$staging" "componentize-py==$version"
        dest="$lib"
        use_lib "$lib"
    fi
    # A broken or older install makes way; a finished one that a concurrent
    # build put there first is kept (mv fails on a folder that is not empty).
    installed || rm -rf "$dest"
    mv -T "$staging" "$dest" 2>/dev/null || true
    if ! installed; then
        echo "build.sh: componentize-py $version does not run from $dest" >&2
        exit 1
    fi
fi

# Into a temporary file first, so a failed build never leaves half a plugin.
# `-p .` bundles the modules app.py imports; the tests are not among them.
cpy --quiet -d wit -w probe componentize -p . -o {{name}}.wasm.tmp app
mv {{name}}.wasm.tmp {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(stat -c %s {{name}}.wasm) bytes)" >&2
