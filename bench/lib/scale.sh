# Section 2: scheduled scale, N http-health probes at a one-minute interval.
# Sourced by bench/run.

# scale_scrape NAME: one full /metrics scrape of the running wasmprobe into
# $dir/NAME.txt, summarised into $dir/NAME.json; sets S_TIME and S_SIZE.
scale_scrape() {
    local name=$1 out
    out=$(curl -s --max-time 300 -o "$dir/$1.txt" -w '%{time_total} %{size_download}' "http://127.0.0.1:$WP_PORT/metrics") \
        || die "scrape $1 failed"
    read -r S_TIME S_SIZE <<<"$out"
    $TOOL scrape "$dir/$1.txt" > "$dir/$1.json"
    rm -f "$dir/$1.txt"
}

# Sum of the CPU ticks of nginx's workers (children of the master).
nginx_ticks() {
    local sum=0 p
    for p in $(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" 2>/dev/null); do
        sum=$(( sum + $(cpu_ticks "$p") ))
    done
    echo "$sum"
}

scale_one() {
    local n=$1
    local dur=${SCALE_DURATION:-130} warm=${SCALE_WARMUP:-10}
    local max_runs=${SCALE_MAX_RUNS:-128} workers=${SCALE_WORKERS:-}
    local memory=${SCALE_MEMORY:-16MiB} jitter=${SCALE_JITTER:-1s} timeout=${SCALE_TIMEOUT:-5s}
    local dir=$BENCH_TMP/scale-$n
    mkdir -p "$dir"
    (( dur > warm + 5 )) || die "SCALE_DURATION ($dur) must exceed SCALE_WARMUP ($warm) by more than 5 s"
    WP_PORT=$(free_port)
    local t0=$SECONDS
    $TOOL scale-config "$n" "$dir/wasmprobe.toml" "$WP_PORT" "$NGINX_PORT" "$BENCH_ROOT" \
        "$BENCH_CACHE" "$max_runs" "$workers" "$memory" "$jitter" "$timeout"
    say ""
    say "-- $n probes (config $(du -h "$dir/wasmprobe.toml" | cut -f1)B, generated in $((SECONDS - t0)) s)"
    say "   each: http-health GET http://127.0.0.1:$NGINX_PORT/, schedule 'S * * * * *' (S = index mod 60), jitter $jitter, timeout $timeout"
    say "   engine: max_concurrent_runs $max_runs, worker_threads ${workers:-default (CPU count)}, limits.memory $memory (memory bound: $max_runs x $memory of linear memory in flight), watch off"
    say "   expected: $(awk -v n="$n" 'BEGIN { printf "%.1f", n / 60 }') runs/s"

    start_wasmprobe "$dir/wasmprobe.toml" "$dir/wasmprobe.log" "${SCALE_READY_TIMEOUT:-900}"
    local ready_rss ready_hwm
    ready_rss=$(proc_kib "$WP_PID" VmRSS)
    ready_hwm=$(proc_kib "$WP_PID" VmHWM)
    say "   start to first /metrics: $(awk -v ms="$WP_READY_MS" 'BEGIN { printf "%.1f", ms / 1000 }') s, RSS then $(mib "$ready_rss") MiB ($(awk -v k="$ready_rss" -v n="$n" 'BEGIN { printf "%.1f", k / n }') KiB per probe before any run)"

    local started=$SECONDS
    sleep "$warm"
    local a0 b0 ca cb na nb
    a0=$(date +%s.%N)
    scale_scrape a
    local a_time=$S_TIME a_size=$S_SIZE
    ca=$(cpu_ticks "$WP_PID"); na=$(nginx_ticks)
    local ta
    ta=$(date +%s.%N)
    local left=$(( dur - (SECONDS - started) ))
    (( left > 0 )) && sleep "$left"
    local tb
    tb=$(date +%s.%N)
    cb=$(cpu_ticks "$WP_PID"); nb=$(nginx_ticks)
    b0=$(date +%s.%N)
    local rss hwm runs_hwm
    rss=$(proc_kib "$WP_PID" VmRSS)
    runs_hwm=$(proc_kib "$WP_PID" VmHWM)
    scale_scrape b
    hwm=$(proc_kib "$WP_PID" VmHWM)
    local b_time=$S_TIME b_size=$S_SIZE
    kill -0 "$WP_PID" 2>/dev/null || { tail -20 "$dir/wasmprobe.log" >&2; die "wasmprobe exited during the scale run"; }
    stop "$WP_PID"

    local window cpu_window
    window=$(awk -v a="$a0" -v b="$b0" 'BEGIN { printf "%.1f", b - a }')
    cpu_window=$(awk -v a="$ta" -v b="$tb" 'BEGIN { printf "%.3f", b - a }')
    local runs runs_per_s runs_by_result lag_starts lag_p50_ms lag_p99_ms lag_mean_ms lag_over_top_bucket
    local skipped rejected_samples in_flight probe_series sample_lines
    eval "$($TOOL scale-delta "$dir/a.json" "$dir/b.json" "$window")"
    local cpu nginx_cpu
    cpu=$(awk -v t=$((cb - ca)) -v h="$CLK_TCK" -v s="$cpu_window" 'BEGIN { printf "%.1f", t / h / s * 100 }')
    nginx_cpu=$(awk -v t=$((nb - na)) -v h="$CLK_TCK" -v s="$cpu_window" 'BEGIN { printf "%.1f", t / h / s * 100 }')
    local warns
    warns=$(grep -cE ' (WARN|ERROR) ' "$dir/wasmprobe.log" || true)
    say "   window: ${window} s between two scrapes (after ${warm} s warm-up)"
    say "   runs/s:          $runs_per_s (runs $runs: $runs_by_result)"
    say "   schedule lag:    p50 $lag_p50_ms ms, p99 $lag_p99_ms ms, mean $lag_mean_ms ms over $lag_starts starts (p50/p99 interpolated in the histogram's buckets; $lag_over_top_bucket above 10 s)"
    say "   skipped starts:  $skipped; samples rejected: $rejected_samples; runs in flight at the end: $in_flight"
    say "   CPU:             wasmprobe $cpu % of one core (of $(( $(nproc) * 100 )) %); nginx worker $nginx_cpu %"
    say "   RSS:             $(mib "$rss") MiB at the end, peak (VmHWM) $(mib "$hwm") MiB (by the first /metrics $(mib "$ready_hwm"), before the last scrape $(mib "$runs_hwm"))"
    say "   series:          $probe_series held by probes (wasmprobe_probe_series), $sample_lines samples in /metrics"
    say "   /metrics scrape: $(awk -v t="$a_time" -v s="$a_size" 'BEGIN { printf "%.2f s, %.1f MiB", t, s / 1048576 }') (first), $(awk -v t="$b_time" -v s="$b_size" 'BEGIN { printf "%.2f s, %.1f MiB", t, s / 1048576 }') (second)"
    (( warns > 0 )) && say "   log: $warns WARN/ERROR lines, e.g. $(grep -m1 -E ' (WARN|ERROR) ' "$dir/wasmprobe.log" | cut -c1-200)"
    if (( n >= 100000 )); then
        say "   goal (100,000 probes, 1-min interval, 2 cores): lag p99 < 50 ms (got $lag_p99_ms ms), RSS < 512 MiB (got $(mib "$hwm") MiB peak)"
    fi
    printf 'wasmprobe,%s,%s,%s\n' "$n" "$(mib "$hwm")" "$lag_p99_ms" >> "$BENCH_TMP/scale.csv"
    return 0
}

section_scale() {
    hdr "2. scheduled scale: N http-health probes against local nginx, one-minute interval"
    [[ -n ${NGINX_PORT:-} ]] || start_nginx
    say "duration: ${SCALE_DURATION:-130} s per size after the first successful scrape (window = duration - ${SCALE_WARMUP:-10} s warm-up)"
    local n
    echo "series,x,rss,lag" > "$BENCH_TMP/scale.csv"
    for n in ${SCALE_SIZES:-10000 100000}; do
        scale_one "$n"
    done
    mkdir -p "$BENCH_ROOT/bench/charts"
    $TOOL chart "$BENCH_TMP/scale.csv" "$BENCH_ROOT/bench/charts/scale.svg" \
        "Scheduled probes at a one-minute interval ($(nproc) cores)" "scheduled probes" \
        "rss:peak RSS (MiB)" "lag:schedule lag p99 (ms)"
}
