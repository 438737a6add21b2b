# Sourced by scripts/text-order, scripts/code-order and scripts/build-pgo:
# the engine run on the default probes.toml that each of them measures, on
# a spare port, with its own compile cache in a temporary directory.

ENGINE_PID=""

# engine_config PORT DIR BIN: DIR/probes.toml, the default config with its
# listen address and self-check on 127.0.0.1:PORT, its cache in DIR/cache
# and the plugins from dist/plugins; the cache filled by BIN compile.
engine_config() {
    local port=$1 dir=$2 bin=$3
    sed -e "s|127\.0\.0\.1:10464|127.0.0.1:$port|g" \
        -e "s|^cache_dir = .*|cache_dir = \"$dir/cache\"|" \
        -e "s|^plugin_dirs = .*|plugin_dirs = [\"$PWD/dist/plugins\"]|" probes.toml > "$dir/probes.toml"
    # The image's case: a filled compile cache, so nothing is compiled
    # while the engine runs.
    "$bin" compile --config "$dir/probes.toml" > "$dir/compile.log" 2>&1 \
        || { cat "$dir/compile.log" >&2; return 1; }
}

# engine_start WHO BIN DIR PORT [VAR=VALUE...]: starts BIN run on
# DIR/probes.toml with the variables given, and waits until it answers
# /healthz. Fails, naming WHO, if it exits or never answers.
engine_start() {
    local who=$1 bin=$2 dir=$3 port=$4
    shift 4
    env "$@" "$bin" run --config "$dir/probes.toml" > "$dir/run.log" 2>&1 &
    ENGINE_PID=$!
    for _ in $(seq 600); do
        engine_alive "$who" "$dir" || return 1
        curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
        sleep 0.05
    done
    echo "$who: the engine did not answer on 127.0.0.1:$port" >&2
    cat "$dir/run.log" >&2
    return 1
}

# engine_alive WHO DIR: whether the engine started here still runs (and so
# is what answers on the port).
engine_alive() {
    kill -0 "$ENGINE_PID" 2>/dev/null && return 0
    echo "$1: the engine exited" >&2
    cat "$2/run.log" >&2
    return 1
}

# engine_trace WHO BIN DIR PORT SECONDS TRACER: the workload both tracers
# record: BIN run with the preloaded TRACER (TRACE_SECONDS=SECONDS,
# TRACE_OUT=DIR/called), a /metrics scrape and a /probe of http_2xx half-way,
# then a wait for the tracer's report. Fails, naming WHO, if any step does.
engine_trace() {
    local who=$1 bin=$2 dir=$3 port=$4 seconds=$5 tracer=$6
    shift 6
    engine_start "$who" "$bin" "$dir" "$port" "$@" TRACE_SECONDS="$seconds" \
        TRACE_OUT="$dir/called" LD_PRELOAD="$tracer" || return 1
    local base=http://127.0.0.1:$port
    sleep $((seconds / 2))
    # Still ours (not another process on the port)?
    engine_alive "$who" "$dir" || return 1
    curl -sf --max-time 10 -o /dev/null "$base/metrics" || { echo "$who: /metrics failed" >&2; return 1; }
    curl -sf --max-time 10 -o /dev/null "$base/probe?module=http_2xx&target=$base/healthz" \
        || { echo "$who: /probe failed" >&2; return 1; }
    for _ in $(seq $((seconds * 2 + 60))); do
        [[ -s $dir/called ]] && return 0
        sleep 0.5
    done
    echo "$who: the tracer wrote nothing" >&2
    cat "$dir/run.log" >&2
    return 1
}

# engine_stop: SIGTERM (the engine drains and exits normally), then wait.
engine_stop() {
    [[ -n $ENGINE_PID ]] || return 0
    kill -TERM "$ENGINE_PID" 2>/dev/null || true
    wait "$ENGINE_PID" 2>/dev/null || true
    ENGINE_PID=""
}
