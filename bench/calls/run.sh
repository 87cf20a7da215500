#!/usr/bin/env bash
# Calls benchmark: SIPp uac -> sipserver-mock (B2BUA) -> SIPp uas, against SIPp uac -> uas
# directly (the generator's own ceiling), same machine, same run. See bench/calls/README.md.
#
#   bench/calls/run.sh [--rates 500,1000,2000,3000] [--calls 20000] [--hold 2000] [--no-build]
#
#   --rates LIST   offered call rates (calls/s) for the ramp
#   --calls M      calls per ramp step
#   --hold N       concurrent long calls (60 s each) for the memory-per-call phase
#   --no-build     use the existing target/release/sipserver-mock
#   --capture N    run the node with --capture-limit N (the capture tap on), to measure its cost
#
# Each ramp step: a fresh node, the uas registered as DN 7001's phone, `sipp -sn uac` at the
# offered rate; the table shows achieved calls/s (SuccessfulCall / elapsed), failed calls and
# retransmissions from SIPp's -trace_stat. Memory: the node's RSS with N calls held up at once,
# minus its RSS before, divided by N. Raw outputs go to bench-out/calls/<timestamp>.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
RATES=500,1000,2000,3000
CALLS=20000
HOLD=2000
BUILD=1
CAPTURE=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) RATES=$2; shift 2 ;;
        --calls) CALLS=$2; shift 2 ;;
        --hold) HOLD=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --capture) CAPTURE=(--capture-limit "$2"); shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown flag: $1 (see --help)" >&2; exit 2 ;;
    esac
done

NODE_IP=127.0.6.1
UAS_IP=127.0.6.2
UAC_IP=127.0.6.3
OUT="$ROOT/bench-out/calls/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

command -v sipp >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester >/dev/null; }
if [ "$BUILD" = 1 ]; then (cd "$ROOT" && cargo build --release -q -p sipserver-mock); fi
BIN="$ROOT/target/release/sipserver-mock"

cat > "$OUT/node.toml" <<TOML
name = "bench"
dc = "dc1"
address = "$NODE_IP"
sip_port = 5060
tlib_port = 3000
control_port = 9000
journal_capacity = 1000
call_audit_interval = "0s"
[options]
logout_on_disconnect = true
agent_emu_login_on_call = false
wrap_up_time = "0s"
ownership_move_delay = "30s"
TOML

start_node() {
    "$BIN" --config "$OUT/node.toml" "${CAPTURE[@]}" > "$OUT/node-$1.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    for _ in $(seq 50); do curl -sf "http://$NODE_IP:9000/health" >/dev/null && return; sleep 0.1; done
    echo "node did not start" >&2; exit 1
}

start_uas() {  # $1 = port
    local said
    said=$(timeout 600 sipp -sn uas -i "$UAS_IP" -p "$1" -nostdin -bg 2>&1 || true)
    UAS_PID=$(sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' <<<"$said")
    PIDS+=("$UAS_PID")
}

register_uas() {  # $1 = port
    python3 - "$NODE_IP" "$UAS_IP" "$1" <<'PY'
import socket, sys
node, uas, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((uas, 0)); s.settimeout(2)
me = s.getsockname()[1]
s.sendto((f"REGISTER sip:{node}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {uas}:{me};branch=z9hG4bKbench{port}\r\n"
          f"From: <sip:7001@{node}>;tag=b\r\nTo: <sip:7001@{node}>\r\nCall-ID: bench{port}\r\nCSeq: 1 REGISTER\r\n"
          f"Contact: <sip:7001@{uas}:{port}>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n").encode(), (node, 5060))
assert s.recv(4096).startswith(b"SIP/2.0 200"), "REGISTER refused"
PY
}

# One uac run; prints "achieved failed retrans".
run_uac() {  # $1 = label, $2 = rate, $3 = calls, $4 = target, extra args...
    local label=$1 rate=$2 calls=$3 target=$4; shift 4
    local dir="$OUT/$label-$rate"; mkdir -p "$dir"
    (cd "$dir" && timeout -k 5 $((calls / rate + 60)) sipp -sn uac -s 7001 -i "$UAC_IP" -p 0 -r "$rate" -m "$calls" -l $((rate * 4)) \
        -nostdin -trace_stat -stf stat.csv -fd 1 -trace_screen -screen_file screen.log "$@" "$target" >/dev/null 2>&1 || true)
    python3 - "$dir/stat.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
# StartTime / CurrentTime end with the epoch in seconds after a tab.
epoch = lambda name: float(col(name).split('\t')[-1])
elapsed = epoch('CurrentTime') - epoch('StartTime')
ok = int(col('SuccessfulCall(C)')); failed = int(col('FailedCall(C)')); retrans = int(col('Retransmissions(C)'))
print(f"{ok / max(elapsed, 1e-9):.0f} {failed} {retrans} {ok}")
PY
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "| path | offered calls/s | achieved calls/s | successful | failed | retransmissions |" > "$OUT/table.md"
echo "|---|---|---|---|---|---|" >> "$OUT/table.md"
IFS=, read -r -a RATE_LIST <<< "$RATES"
port=6000
for rate in "${RATE_LIST[@]}"; do
    n=$(( CALLS < rate * 20 ? CALLS : rate * 20 ))
    port=$((port + 1)); start_uas "$port"
    read -r ach fail re ok < <(run_uac direct "$rate" "$n" "$UAS_IP:$port")
    echo "| SIPp uac → uas (no node) | $rate | $ach | $ok | $fail | $re |" >> "$OUT/table.md"
    kill -KILL "$UAS_PID" 2>/dev/null || true
    port=$((port + 1)); start_node "$rate"; start_uas "$port"; register_uas "$port"
    read -r ach fail re ok < <(run_uac node "$rate" "$n" "$NODE_IP:5060")
    echo "| SIPp uac → sipserver-mock → uas | $rate | $ach | $ok | $fail | $re |" >> "$OUT/table.md"
    kill -KILL "$NODE_PID" "$UAS_PID" 2>/dev/null || true
    echo "rate $rate done" >&2
done

# Memory per active call: HOLD calls up at once (each lasts 60 s).
port=$((port + 1)); start_node hold; start_uas "$port"; register_uas "$port"
before=$(rss_kb "$NODE_PID")
dir="$OUT/hold"; mkdir -p "$dir"
(cd "$dir" && timeout -k 5 120 sipp -sn uac -s 7001 -i "$UAC_IP" -p 0 -r 500 -m "$HOLD" -l "$HOLD" -d 60000 -nostdin -bg "$NODE_IP:5060" >/dev/null 2>&1) || true
for _ in $(seq 120); do
    active=$(curl -s "http://$NODE_IP:9000/metrics" | awk '/^drlab_calls_active/ {print $2}')
    [ "${active:-0}" -ge "$HOLD" ] && break; sleep 0.5
done
after=$(rss_kb "$NODE_PID")
per_call=$(( (after - before) * 1024 / (active > 0 ? active : 1) ))
pkill -KILL -f "sipp -sn uac -s 7001 -i $UAC_IP" 2>/dev/null || true
{
    echo
    echo "Memory: $active calls up at once; node RSS $before kB → $after kB: **$per_call bytes per active call** (both dialogs, transactions, timers)."
} >> "$OUT/table.md"
cat "$OUT/table.md"
echo "raw outputs: $OUT"
