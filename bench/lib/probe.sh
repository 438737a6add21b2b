# Section 1: /probe throughput, wasmprobe vs blackbox_exporter, same wrk load.
# Sourced by bench/run.

# probe_load NAME PID URL: warm-up, then the measured wrk run; prints one
# result line and sets R_<key> variables for NAME.
probe_load() {
    local name=$1 pid=$2 url=$3 out=$BENCH_TMP/wrk-$1.txt
    local threads=${PROBE_THREADS:-2} conns=${PROBE_CONNECTIONS:-32}
    local dur=${PROBE_DURATION:-20} warm=${PROBE_WARMUP:-3}
    if (( warm > 0 )); then
        wrk -t"$threads" -c"$conns" -d"${warm}s" "$url" >/dev/null 2>&1 || true
    fi
    local c0 c1
    c0=$(cpu_ticks "$pid")
    wrk -t"$threads" -c"$conns" -d"${dur}s" --latency "$url" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed against $name"; }
    c1=$(cpu_ticks "$pid")
    local requests seconds rps p50_ms p90_ms p99_ms non2xx sock_connect sock_read sock_write sock_timeout
    eval "$($TOOL wrk "$out")"
    local cpu_s cpu_us hwm
    cpu_s=$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')
    hwm=$(proc_kib "$pid" VmHWM)
    local ok=$(( requests - non2xx ))
    # CPU per probe answered with 2xx (refused requests are not probes).
    cpu_us=$(awk -v t=$((c1 - c0)) -v h="$CLK_TCK" -v n="$ok" 'BEGIN { printf "%.0f", n ? t / h / n * 1e6 : 0 }')
    local ok_rps
    ok_rps=$(awk -v n="$ok" -v s="$seconds" 'BEGIN { printf "%.1f", s ? n / s : 0 }')
    local row
    printf -v row '  %-10s %9s %9s %8s %8s %8s %10s %10s %9s %8s' "$name" "$rps" "$ok_rps" "$p50_ms" "$p90_ms" "$p99_ms" "$cpu_us" "$cpu_s" "$(mib "$hwm")" "$non2xx"
    ROWS+=("$row")
    if (( non2xx > 0 )); then
        ROWS+=("             $name: latency percentiles include the $non2xx non-2xx answers")
    fi
    if (( sock_connect + sock_read + sock_write + sock_timeout > 0 )); then
        ROWS+=("             wrk socket errors: connect $sock_connect, read $sock_read, write $sock_write, timeout $sock_timeout")
    fi
    printf -v "R_${name}_rps" '%s' "$ok_rps"
    printf -v "R_${name}_p99" '%s' "$p99_ms"
    printf -v "R_${name}_p50" '%s' "$p50_ms"
    printf -v "R_${name}_cpu" '%s' "$cpu_us"
    printf -v "R_${name}_hwm" '%s' "$hwm"
}

# probe_check NAME URL: one request, prints probe_success from the answer.
probe_check() {
    local body code
    body=$(curl -s -w '\n%{http_code}' --max-time 10 "$2") || true
    code=${body##*$'\n'}
    local success
    success=$(printf '%s\n' "$body" | awk '/^probe_success/ { print $NF; exit }')
    say "  check $1: HTTP $code, probe_success ${success:-missing}"
}

# section_curve: throughput and p99 of both exporters at several wrk
# connection counts (CURVE_CONNECTIONS, CURVE_DURATION), drawn into
# bench/charts/probe-curve.svg.
section_curve() {
    hdr "1b. /probe throughput and p99 against concurrency, both exporters"
    [[ -n ${NGINX_PORT:-} ]] || start_nginx
    local target="http://127.0.0.1:$NGINX_PORT/"
    local dir=$BENCH_TMP/curve
    mkdir -p "$dir"
    probe_configs "$dir"
    local levels=${CURVE_CONNECTIONS:-4 16 64 128}
    say "load: wrk -t${PROBE_THREADS:-2} -c{$levels} -d${CURVE_DURATION:-8}s per point, one exporter at a time"
    local csv=$dir/curve.csv c name
    echo "series,x,rps,p99" > "$csv"
    ROWS=()
    for name in wasmprobe blackbox; do
        if [[ $name == wasmprobe ]]; then
            start_wasmprobe "$dir/wasmprobe.toml" "$dir/wasmprobe.log" 120
        else
            start_blackbox "$dir/blackbox.yml" "$dir/blackbox.log"
        fi
        local port=$WP_PORT pid=$WP_PID
        [[ $name == blackbox ]] && { port=$BB_PORT; pid=$BB_PID; }
        for c in $levels; do
            PROBE_CONNECTIONS=$c PROBE_DURATION=${CURVE_DURATION:-8} PROBE_WARMUP=1 \
                probe_load "$name" "$pid" "http://127.0.0.1:$port/probe?module=http_2xx&target=$target"
            local rps_var="R_${name}_rps" p99_var="R_${name}_p99"
            echo "$name,$c,${!rps_var},${!p99_var}" >> "$csv"
            say "  $name -c$c: ${!rps_var} probes/s, p99 ${!p99_var} ms"
        done
        stop "$pid"
    done
    mkdir -p "$BENCH_ROOT/bench/charts"
    $TOOL chart "$csv" "$BENCH_ROOT/bench/charts/probe-curve.svg" \
        "/probe of a local nginx: wasmprobe and blackbox_exporter ($(nproc) cores)" "wrk connections" \
        "rps:probes/s (2xx)" "p99:p99 latency (ms)"
}

# probe_configs DIR: the wasmprobe and blackbox_exporter configs of the
# /probe sections, in DIR; sets WP_PORT.
probe_configs() {
    local dir=$1
    WP_PORT=$(free_port)
    cat > "$dir/wasmprobe.toml" <<EOF
[server]
listen = "127.0.0.1:$WP_PORT"
probe_concurrency = ${PROBE_CONCURRENCY:-64}

[engine]
plugin_dirs = []
cache_dir = "$BENCH_CACHE"
watch = "0s"

[plugins.http-health]
path = "$BENCH_ROOT/dist/plugins/http-health.wasm"

[probes.http_2xx]
plugin = "http-health"
allow = ["http://127.0.0.1:*"]
EOF
    cat > "$dir/blackbox.yml" <<EOF
modules:
  http_2xx:
    prober: http
EOF
}

section_probe() {
    hdr "1. /probe throughput: HTTP probe of a local nginx, same wrk load"
    [[ -n ${NGINX_PORT:-} ]] || start_nginx
    local target="http://127.0.0.1:$NGINX_PORT/"
    local dir=$BENCH_TMP/probe
    mkdir -p "$dir"
    probe_configs "$dir"
    local threads=${PROBE_THREADS:-2} conns=${PROBE_CONNECTIONS:-32} dur=${PROBE_DURATION:-20}
    say "target:  nginx $("$NGINX" -v 2>&1 | sed 's/.*version: //') serving a 26-byte file on $target (1 worker)"
    say "load:    wrk -t$threads -c$conns -d${dur}s --latency '/probe?module=http_2xx&target=$target' (after a ${PROBE_WARMUP:-3}s warm-up)"
    say "wasmprobe: probe http_2xx (http-health, no schedule, allow http://127.0.0.1:*), server.probe_concurrency ${PROBE_CONCURRENCY:-64}"
    say "blackbox:  module http_2xx (prober: http, defaults)"
    say "CPU/probe: process utime+stime (/proc/PID/stat) over the measured run / 2xx answers; peak RSS: VmHWM"

    ROWS=()
    # One exporter at a time, so neither competes with the other for CPU.
    start_wasmprobe "$dir/wasmprobe.toml" "$dir/wasmprobe.log" 120
    local wp_url="http://127.0.0.1:$WP_PORT/probe?module=http_2xx&target=$target"
    probe_check wasmprobe "$wp_url"
    probe_load wasmprobe "$WP_PID" "$wp_url"
    local scrape=$dir/wasmprobe-metrics.txt
    curl -s -o "$scrape" "http://127.0.0.1:$WP_PORT/metrics" || true
    stop "$WP_PID"

    start_blackbox "$dir/blackbox.yml" "$dir/blackbox.log"
    local bb_url="http://127.0.0.1:$BB_PORT/probe?module=http_2xx&target=$target"
    probe_check blackbox "$bb_url"
    probe_load blackbox "$BB_PID" "$bb_url"
    stop "$BB_PID"

    printf '  %-10s %9s %9s %8s %8s %8s %10s %10s %9s %8s\n' "" "req/s" "2xx/s" "p50 ms" "p90 ms" "p99 ms" "CPU us/2xx" "CPU s" "HWM MiB" "non-2xx"
    printf '%s\n' "${ROWS[@]}"
    local rejected by_result
    rejected=$(awk '/^wasmprobe_ondemand_rejected_total/ { print $NF }' "$scrape")
    by_result=$(awk '/^wasmprobe_ondemand_runs_total/ { match($0, /result="[^"]*"/); printf "%s%s=%s", sep, substr($0, RSTART + 8, RLENGTH - 9), $NF; sep=", " }' "$scrape")
    say "  wasmprobe_ondemand_runs_total (warm-up, check and run): ${by_result:-none}"
    say "  wasmprobe_ondemand_rejected_total (503s): ${rejected:-0}"

    say "  ratios (wasmprobe / blackbox_exporter):"
    awk -v a="$R_wasmprobe_rps" -v b="$R_blackbox_rps" 'BEGIN { printf "    probes/s (2xx)  %.2fx   goal: >= 3.5x\n", b ? a / b : 0 }'
    awk -v a="$R_wasmprobe_p99" -v b="$R_blackbox_p99" 'BEGIN { printf "    p99 latency     %.2fx   goal: <= 1x (p99 no worse)\n", b ? a / b : 0 }'
    awk -v a="$R_wasmprobe_p50" -v b="$R_blackbox_p50" 'BEGIN { printf "    p50 latency     %.2fx\n", b ? a / b : 0 }'
    awk -v a="$R_wasmprobe_cpu" -v b="$R_blackbox_cpu" 'BEGIN { printf "    CPU per probe   %.2fx   goal: <= 0.33x\n", b ? a / b : 0 }'
    awk -v a="$R_wasmprobe_hwm" -v b="$R_blackbox_hwm" 'BEGIN { printf "    peak RSS        %.2fx\n", b ? a / b : 0 }'
}
