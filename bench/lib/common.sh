# Shared helpers for bench/run: packages, ports, processes, /proc readings.
# Sourced, not executed.

BENCH_ROOT=${BENCH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WASMPROBE=${WASMPROBE_BIN:-$BENCH_ROOT/target/release/wasmprobe}
BLACKBOX=${BLACKBOX_BIN:-prometheus-blackbox-exporter}
TOOL="python3 $BENCH_ROOT/bench/lib/tool.py"
CLK_TCK=$(getconf CLK_TCK)
BENCH_CACHE=${BENCH_CACHE:-$BENCH_ROOT/target/bench-cache}

say() { printf '%s\n' "$*"; }
hdr() { printf '\n== %s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# --- packages ---------------------------------------------------------------

# Installs the Debian packages the benchmarks drive when their command is
# missing (as scripts/test does).
ensure_packages() {
    local missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v "$BLACKBOX" >/dev/null 2>&1 || missing+=(prometheus-blackbox-exporter)
    if (( ${#missing[@]} )); then
        say "installing ${missing[*]}" >&2
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo"
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -qq
        if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
            # nginx-light is a transitional name on newer releases.
            missing=("${missing[@]/nginx-light/nginx}")
            $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# Waits for the release binary (it may still be building elsewhere); never
# builds it.
wait_for_binary() {
    local waited=0 limit=${BENCH_BINARY_WAIT:-3600}
    while [[ ! -x $WASMPROBE ]]; do
        (( waited == 0 )) && say "waiting for $WASMPROBE (build it with: cargo build --release -p wasmprobe)" >&2
        (( waited >= limit )) && die "$WASMPROBE did not appear within ${limit}s"
        sleep 5; waited=$((waited + 5))
    done
    # A binary being linked right now may exist but be incomplete.
    local size=-1 now
    while now=$(stat -c %s "$WASMPROBE") && [[ $now != "$size" ]]; do
        size=$now; sleep 2
    done
    "$WASMPROBE" --version >/dev/null 2>&1 || die "$WASMPROBE does not run"
}

# --- ports and processes -----------------------------------------------------

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

BENCH_PIDS=()
cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
    if [[ -n ${BENCH_TMP:-} && -d $BENCH_TMP && ${BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$BENCH_TMP"
    fi
}

# stop PID: ends one process this script started and forgets it.
stop() {
    local pid=$1 p rest=()
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [[ $p == "$pid" ]] || rest+=("$p"); done
    BENCH_PIDS=("${rest[@]}")
}

# wait_http URL PID [SECONDS]: until URL answers 2xx; fails when PID exits.
wait_http() {
    local url=$1 pid=$2 limit=${3:-60} start=$SECONDS
    until curl -sf -o /dev/null --max-time 10 "$url"; do
        kill -0 "$pid" 2>/dev/null || return 1
        (( SECONDS - start > limit )) && return 1
        sleep 0.05
    done
}

# CPU seconds (user + system) a process has used so far, in clock ticks.
cpu_ticks() {
    local s
    s=$(cat "/proc/$1/stat") || { echo 0; return; }
    s=${s##*) }
    # After the command name: field 3 is state, utime is 14, stime 15.
    set -- $s
    echo $(( ${12} + ${13} ))
}

# proc_kib PID FIELD: a /proc/PID/status field in KiB (VmRSS, VmHWM).
proc_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- peers and targets ------------------------------------------------------

# start_nginx: a static file on a free loopback port, own prefix and config.
# Sets NGINX_PORT and NGINX_PID.
start_nginx() {
    local dir=$BENCH_TMP/nginx
    mkdir -p "$dir/html" "$dir/logs" "$dir/tmp"
    printf 'ok\nwasmprobe bench target\n' > "$dir/html/index.html"
    chmod -R a+rX "$dir"
    chmod a+x "$BENCH_TMP"
    NGINX_PORT=$(free_port)
    local user=""
    [[ $(id -u) -eq 0 ]] && user="user root;"
    cat > "$dir/nginx.conf" <<CONF
$user
daemon off;
worker_processes ${NGINX_WORKERS:-1};
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $dir/html;
        location / { index index.html; }
    }
}
CONF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stdout" 2>&1 &
    NGINX_PID=$!
    BENCH_PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" 20 \
        || { cat "$dir/logs/error.log" "$dir/logs/stdout" >&2; die "nginx did not start"; }
}

# start_wasmprobe CONFIG LOG [SECONDS]: sets WP_PID and WP_READY_MS (process
# start to /metrics answering). The config's listen port must be in WP_PORT.
start_wasmprobe() {
    local config=$1 log=$2 limit=${3:-120} t0
    t0=$(date +%s%N)
    WASMPROBE_LOG=${WASMPROBE_LOG:-info} "$WASMPROBE" run --config "$config" >"$log" 2>&1 &
    WP_PID=$!
    BENCH_PIDS+=("$WP_PID")
    if ! wait_http "http://127.0.0.1:$WP_PORT/metrics" "$WP_PID" "$limit"; then
        tail -20 "$log" >&2
        die "wasmprobe did not answer on 127.0.0.1:$WP_PORT within ${limit}s"
    fi
    WP_READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}

# start_blackbox CONFIG LOG: sets BB_PORT and BB_PID.
start_blackbox() {
    local config=$1 log=$2
    BB_PORT=$(free_port)
    "$BLACKBOX" --config.file="$config" --web.listen-address="127.0.0.1:$BB_PORT" >"$log" 2>&1 &
    BB_PID=$!
    BENCH_PIDS+=("$BB_PID")
    wait_http "http://127.0.0.1:$BB_PORT/metrics" "$BB_PID" 30 \
        || { tail -20 "$log" >&2; die "blackbox_exporter did not start"; }
}
