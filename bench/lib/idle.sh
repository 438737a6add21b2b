# Section 5: idle RSS with the default config, wasmprobe vs blackbox_exporter.
# Sourced by bench/run.

# Fault-around maps a file's neighbouring pages only while they are in the
# page cache, so a binary just written (or just read by another step)
# starts with more of itself resident than one read from disk: both
# exporters start from a cold cache where the bench may drop it.
drop_page_cache() {
    [[ -w /proc/sys/vm/drop_caches ]] || return 0
    sync
    echo 1 > /proc/sys/vm/drop_caches
}

section_idle() {
    local wait=${IDLE_WAIT:-10}
    hdr "5. idle RSS after ${wait} s, default configs"
    local dir=$BENCH_TMP/idle
    mkdir -p "$dir"
    WP_PORT=$(free_port)
    # The default probes.toml on a spare port (its self-check follows the
    # port), with absolute plugin and cache paths.
    sed -e "s|127\.0\.0\.1:10464|127.0.0.1:$WP_PORT|g" \
        -e "s|^cache_dir = .*|cache_dir = \"$BENCH_CACHE\"|" \
        -e "s|^plugin_dirs = .*|plugin_dirs = [\"$BENCH_ROOT/dist/plugins\"]|" \
        "$BENCH_ROOT/probes.toml" > "$dir/probes.toml"
    local bb_config=/etc/prometheus/blackbox.yml
    if [[ ! -r $bb_config ]]; then
        bb_config=$dir/blackbox.yml
        printf 'modules:\n  http_2xx:\n    prober: http\n' > "$bb_config"
    fi
    say "wasmprobe: probes.toml as shipped ($(grep -cE '^\[probes\.[^.]+\]$' "$BENCH_ROOT/probes.toml") probes, scheduled ones running), listen and paths rewritten"
    say "blackbox:  $bb_config"
    say "cache:     $BENCH_CACHE, filled by 'wasmprobe compile' first"
    say "goal: wasmprobe at most 1.5x blackbox_exporter's idle RSS"
    # The release binary links the functions an idle engine runs first
    # (host/text-order.txt), and the bundled plugins have theirs laid out
    # first (plugins/*/code-order.txt, applied by scripts/build-plugins); a
    # list written for another Cargo.lock has lost most of its names, and
    # the RSS measured here rises by up to 10 MiB.
    local lock list stale=()
    lock=$(sha256sum "$BENCH_ROOT/Cargo.lock" | cut -c1-12)
    [[ -f $BENCH_ROOT/host/text-order.txt ]] \
        || say "text order: host/text-order.txt is missing (scripts/text-order writes it)"
    for list in "$BENCH_ROOT"/host/text-order.txt "$BENCH_ROOT"/plugins/*/code-order.txt; do
        [[ -f $list ]] || continue
        grep -q "Cargo.lock $lock" "$list" || stale+=("${list#"$BENCH_ROOT"/}")
    done
    if (( ${#stale[@]} )); then
        say "layout lists written for another Cargo.lock: ${stale[*]}; run scripts/text-order or scripts/code-order"
    fi
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        say "page cache: dropped before each start (a freshly written binary otherwise shows 2-4 MiB more resident)"
    else
        say "page cache: not dropped (needs root); a freshly built binary may show 2-4 MiB more resident"
    fi

    # `wasmprobe compile` fills the compile cache, so the measured process
    # is the steady case: a process that had to compile its plugins ran
    # them on the baseline tier first and compiled them again optimized.
    "$WASMPROBE" compile --config "$dir/probes.toml" > "$dir/compile.log" 2>&1 \
        || die "wasmprobe compile failed: $(tail -3 "$dir/compile.log")"
    drop_page_cache
    start_wasmprobe "$dir/probes.toml" "$dir/wasmprobe.log" 60
    sleep "$wait"
    local wp_rss wp_hwm
    wp_rss=$(proc_kib "$WP_PID" VmRSS); wp_hwm=$(proc_kib "$WP_PID" VmHWM)
    local wp_detail
    wp_detail=$(awk '/^(RssAnon|RssFile|RssShmem):/ { printf "%s%s %.1f", sep, $1, $2 / 1024; sep=", " }' "/proc/$WP_PID/status")
    # A later look at the same process: memory that grows with the runs
    # of the scheduled probes (pool slots, history) shows only here.
    local late=${IDLE_LATE:-0} wp_late=""
    [[ $late =~ ^[0-9]+$ ]] || die "IDLE_LATE=$late: whole seconds, more than IDLE_WAIT ($wait)"
    (( late == 0 || late > wait )) || die "IDLE_LATE=$late: must be more than IDLE_WAIT ($wait)"
    if (( late > wait )); then
        sleep $((late - wait))
        wp_late=$(proc_kib "$WP_PID" VmRSS)
    fi
    stop "$WP_PID"

    drop_page_cache
    start_blackbox "$bb_config" "$dir/blackbox.log"
    sleep "$wait"
    local bb_rss bb_hwm
    bb_rss=$(proc_kib "$BB_PID" VmRSS); bb_hwm=$(proc_kib "$BB_PID" VmHWM)
    local bb_detail
    bb_detail=$(awk '/^(RssAnon|RssFile|RssShmem):/ { printf "%s%s %.1f", sep, $1, $2 / 1024; sep=", " }' "/proc/$BB_PID/status")
    stop "$BB_PID"
    I_wasmprobe_rss=$wp_rss
    I_blackbox_rss=$bb_rss

    printf '  %-10s %9s %9s   %s\n' "" "RSS MiB" "HWM MiB" "(MiB)"
    printf '  %-10s %9s %9s   %s\n' wasmprobe "$(mib "$wp_rss")" "$(mib "$wp_hwm")" "$wp_detail"
    printf '  %-10s %9s %9s   %s\n' blackbox "$(mib "$bb_rss")" "$(mib "$bb_hwm")" "$bb_detail"
    awk -v a="$wp_rss" -v b="$bb_rss" 'BEGIN { printf "  ratio (wasmprobe / blackbox_exporter) RSS: %.2fx   goal: <= 1.5x\n", b ? a / b : 0 }'
    if [[ -n $wp_late ]]; then
        printf '  wasmprobe after %s s: RSS %s MiB (%+.1f MiB since %s s)\n' "$late" "$(mib "$wp_late")" \
            "$(awk -v a="$wp_late" -v b="$wp_rss" 'BEGIN { printf "%.1f", (a - b) / 1024 }')" "$wait"
    fi
}
