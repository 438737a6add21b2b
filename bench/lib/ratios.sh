# Section 9: the goals that have a peer, as ratios: RATIO_RUNS rounds (default
# 5), each running both exporters back to back (so a noisy minute hits
# both), then the median ratio of every goal with its spread.
# Sourced by bench/run.

# median_spread V...: "median (min-max)" of the numbers.
median_spread() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2fx (%.2f-%.2f)", m, v[1], v[NR] }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b ? a / b : 0 }'; }

section_ratios() {
    local rounds=${RATIO_RUNS:-5} i
    hdr "9. goals against blackbox_exporter: median of $rounds alternating rounds"
    say "each round: section 1 (/probe, wrk -c${PROBE_CONNECTIONS:-32}, ${PROBE_DURATION:-20} s each) and section 5 (idle RSS), both exporters back to back"
    say "details of every round: $BENCH_TMP/ratios.log"
    local rps=() p99=() cpu=() idle=()
    for i in $(seq "$rounds"); do
        section_probe >> "$BENCH_TMP/ratios.log" 2>&1
        section_idle >> "$BENCH_TMP/ratios.log" 2>&1
        rps+=("$(ratio "$R_wasmprobe_rps" "$R_blackbox_rps")")
        p99+=("$(ratio "$R_wasmprobe_p99" "$R_blackbox_p99")")
        cpu+=("$(ratio "$R_wasmprobe_cpu" "$R_blackbox_cpu")")
        idle+=("$(ratio "$I_wasmprobe_rss" "$I_blackbox_rss")")
        say "  round $i: probes/s $R_wasmprobe_rps vs $R_blackbox_rps, p99 $R_wasmprobe_p99 vs $R_blackbox_p99 ms, CPU/probe $R_wasmprobe_cpu vs $R_blackbox_cpu us, idle RSS $(mib "$I_wasmprobe_rss") vs $(mib "$I_blackbox_rss") MiB"
    done
    printf '  %-30s %-22s %s\n' "goal (wasmprobe / blackbox)" "median (spread)" "target"
    printf '  %-30s %-22s %s\n' "/probe throughput" "$(median_spread "${rps[@]}")" ">= 3.5x"
    printf '  %-30s %-22s %s\n' "/probe p99 latency" "$(median_spread "${p99[@]}")" "<= 1x"
    printf '  %-30s %-22s %s\n' "/probe CPU per probe" "$(median_spread "${cpu[@]}")" "<= 0.33x"
    printf '  %-30s %-22s %s\n' "idle RSS, default configs" "$(median_spread "${idle[@]}")" "<= 1.5x"
}
