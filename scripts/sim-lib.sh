# Shared by the scale benchmarks: builds the release binary and starts the simulated tailnet
# with N devices as its own process. Source it, then `start_sim N`; it sets $bin, $work, $url,
# $key, $sim_pid and $ready_ms, and stops the sim on exit.
build_release() {
    echo "==> building the release binary" >&2
    cargo build --release --locked --quiet
    bin=target/release/tailnet-operator
}

start_sim() {
    local devices="$1" start_ns
    work="$(mktemp -d)"
    trap 'kill "$sim_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
    echo "==> starting: tailnet-operator sim --devices $devices" >&2
    start_ns=$(date +%s%N)
    "$bin" sim --listen 127.0.0.1:0 --devices "$devices" >"$work/banner" 2>"$work/sim.err" &
    sim_pid=$!
    for _ in $(seq 1 600); do
        grep -q '^  TS_API_KEY=' "$work/banner" 2>/dev/null && break
        sleep 0.05
    done
    ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
    url=$(sed -n 's/^  TS_API_URL=//p' "$work/banner")
    key=$(sed -n 's/^  TS_API_KEY=//p' "$work/banner")
    [ -n "$url" ] || { echo "the sim did not start:" >&2; cat "$work/sim.err" >&2; exit 1; }
}

# The sim's API call counter: reset, and print by endpoint.
reset_calls() {
    curl -fsS -X POST -H "Authorization: Bearer $key" "$url/sim/calls/reset" >/dev/null
}

print_calls() {
    curl -fsS -H "Authorization: Bearer $key" "$url/sim/calls" \
        | jq -r '.calls | to_entries[] | "  \(.value)  \(.key)"'
}
