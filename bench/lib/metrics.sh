# Section 4: /metrics latency and size at ~100,000 series.
# Sourced by bench/run.

# metrics_scrapes LABEL N CURL_ARGS...: times N scrapes, prints one line.
metrics_scrapes() {
    local label=$1 n=$2
    shift 2
    local times=() size=0 out i
    for (( i = 0; i < n; i++ )); do
        out=$(curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}' "$@" "http://127.0.0.1:$WP_PORT/metrics")
        local t s code
        read -r t s code <<<"$out"
        [[ $code == 200 ]] || die "scrape answered $code"
        times+=("$(awk -v t="$t" 'BEGIN { printf "%.3f", t * 1000 }')")
        size=$s
    done
    local p50 p99 max
    read -r p50 p99 max <<<"$($TOOL pct "${times[@]}")"
    printf '  %-34s %8s %8s %8s %12s\n' "$label" "$p50" "$p99" "$max" "$(awk -v s="$size" 'BEGIN { printf "%.2f MiB", s / 1048576 }')"
    M_P99+=("$p99")
}

section_metrics() {
    hdr "4. /metrics at ~100,000 series"
    local probes=${METRICS_PROBES:-100} count=${METRICS_COUNT:-1000} scrapes=${METRICS_SCRAPES:-20}
    local dir=$BENCH_TMP/metrics
    mkdir -p "$dir"
    WP_PORT=$(free_port)
    {
        printf '[server]\nlisten = "127.0.0.1:%s"\n\n' "$WP_PORT"
        printf '[engine]\nplugin_dirs = []\ncache_dir = "%s"\nwatch = "0s"\n\n' "$BENCH_CACHE"
        printf '[limits]\nmax_series = %d\n\n' $(( count * 2 ))
        printf '[plugins.misbehave]\npath = "%s/dist/fixtures/misbehave.wasm"\nseries_budget = %d\n\n' \
            "$BENCH_ROOT" $(( probes * count * 2 ))
        local i
        for (( i = 0; i < probes; i++ )); do
            printf '[probes.wide%03d]\nplugin = "misbehave"\nschedule = "*/20 * * * * *"\njitter = "2s"\n' "$i"
            printf 'allow = []\n'
            printf '[probes.wide%03d.config]\nbehaviour = "many_series"\ncount = %d\n\n' "$i" "$count"
        done
    } > "$dir/wasmprobe.toml"
    say "config: $probes probes of the misbehave fixture (behaviour many_series, count $count), schedule */20 s + 2 s jitter,"
    say "        limits.max_series $(( count * 2 )), plugins.misbehave.series_budget $(( probes * count * 2 ))"
    say "command: $scrapes x curl -s -o /dev/null -w '%{time_total} %{size_download}' [-H Accept...] /metrics, right after a round of runs"
    say "goal: under 20 ms"
    start_wasmprobe "$dir/wasmprobe.toml" "$dir/wasmprobe.log" 120

    # Wait for one full round (every probe's series published), then time
    # the scrapes in the quiet time before the next round.
    local want=$(( probes * count )) got=0 start=$SECONDS
    while :; do
        curl -s -o "$dir/scrape.txt" "http://127.0.0.1:$WP_PORT/metrics" || true
        got=$(grep -c '^misbehave_value' "$dir/scrape.txt" || true)
        (( got >= want )) && break
        (( SECONDS - start > 90 )) && { tail -5 "$dir/wasmprobe.log" >&2; die "only $got of $want series after 90 s"; }
        sleep 0.5
    done
    local total
    total=$(grep -vc '^#' "$dir/scrape.txt" || true)
    say "series: $got misbehave_value, $total samples in all (classic text), RSS $(mib "$(proc_kib "$WP_PID" VmRSS)") MiB"

    M_P99=()
    printf '  %-34s %8s %8s %8s %12s\n' "format" "p50 ms" "p99 ms" "max ms" "size"
    metrics_scrapes "classic text 0.0.4" "$scrapes"
    metrics_scrapes "OpenMetrics 1.0" "$scrapes" -H 'Accept: application/openmetrics-text; version=1.0.0'
    metrics_scrapes "OpenMetrics + gzip (as Prometheus)" "$scrapes" \
        -H 'Accept: application/openmetrics-text; version=1.0.0' -H 'Accept-Encoding: gzip'
    local before after
    before=$(awk '/^wasmprobe_probe_runs_total/ { s += $NF } END { print s + 0 }' "$dir/scrape.txt")
    after=$(curl -s "http://127.0.0.1:$WP_PORT/metrics" | awk '/^wasmprobe_probe_runs_total/ { s += $NF } END { print s + 0 }')
    say "  runs finished while timing: $(( after - before )) (0: no run overlapped the scrapes); peak RSS $(mib "$(proc_kib "$WP_PID" VmHWM)") MiB"
    stop "$WP_PID"
}
