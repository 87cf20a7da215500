#!/usr/bin/env bash
# Swarm benchmark: N softphone-sim phones (one process, one shared UDP socket) register against
# one sipserver-mock node. Prints the time until every phone is registered, the rate, and the
# CPU and memory of the simulator next to the node's, so it shows whether the simulator or the
# server is the bottleneck. See bench/softphone/README.md.
#
#   bench/softphone/run.sh [flags]
#
#   -n N            phones (default 10000; DNs 1000000 .. 1000000+N-1)
#   --start-rate R  first REGISTERs per second (default 0: all at once, a registration storm)
#   --transport T   udp (default) or tcp
#   --t1 MS         the phones' RFC 3261 T1 (default 500; retransmissions when the node drops)
#   --no-build      use the existing release binaries
#   --out DIR       raw outputs (default bench-out/softphone/<timestamp>)
#   -h, --help      this text
#
# Addresses (loopback aliases, nothing to configure on Linux): node 127.0.7.1 (SIP 5060, control
# 9000), phones 127.0.7.9. The node and the simulator are stopped on exit (by PID).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

N=10000
START_RATE=0
TRANSPORT=udp
T1=500
BUILD=1
OUT=""
NODE_IP=127.0.7.1
SIM_IP=127.0.7.9
DN_FIRST=1000000

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        -n) N=${2:?-n needs a number}; shift 2 ;;
        --start-rate) START_RATE=${2:?--start-rate needs a number}; shift 2 ;;
        --transport) TRANSPORT=${2:?--transport needs udp or tcp}; shift 2 ;;
        --t1) T1=${2:?--t1 needs milliseconds}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ $N =~ ^[0-9]+$ && $N -ge 1 && $N -le 999999 ]] || die "-n must be 1..999999"
[[ $START_RATE =~ ^[0-9]+$ ]] || die "--start-rate must be a number"
[[ $TRANSPORT == udp || $TRANSPORT == tcp ]] || die "--transport takes udp or tcp"
command -v curl >/dev/null || die "needs curl"

BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/release
if [[ $BUILD -eq 1 ]]; then
    log "building softphone-sim and sipserver-mock (release)"
    (cd "$ROOT" && cargo build --release -q -p softphone-sim -p sipserver-mock) ||
        die "cargo build failed (--no-build uses the existing binaries)"
fi
for b in softphone-sim sipserver-mock; do [[ -x $BIN_DIR/$b ]] || die "no binary at $BIN_DIR/$b"; done

if [[ -z $OUT ]]; then
    OUT=$ROOT/bench-out/softphone/$(date +%Y%m%d-%H%M%S)
    mkdir -p "$OUT"
    ln -sfn "$(basename "$OUT")" "$ROOT/bench-out/softphone/latest"
fi
mkdir -p "$OUT"
DN_LAST=$((DN_FIRST + N - 1))
cat >"$OUT/node.toml" <<EOF
name = "bench1"
dc = "dc1"
address = "$NODE_IP"
sip_port = 5060
tlib_port = 3000
tc_port = 3100
control_port = 9000
dns = [{ range = "$DN_FIRST-$DN_LAST", kind = "softphone" }]

[registrar]
default_expires = "3600s"
min_expires = "60s"
max_expires = "7200s"
EOF

NODE_PID=""
SIM_PID=""
cleanup() {
    [[ -n $SIM_PID ]] && kill "$SIM_PID" 2>/dev/null || true
    [[ -n $NODE_PID ]] && kill -INT "$NODE_PID" 2>/dev/null || true
    [[ -n $NODE_PID ]] && wait "$NODE_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
HZ=$(getconf CLK_TCK)

"$BIN_DIR/sipserver-mock" --config "$OUT/node.toml" >"$OUT/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 100); do
    curl -sf -o /dev/null "http://$NODE_IP:9000/metrics" && break
    kill -0 "$NODE_PID" 2>/dev/null || { cat "$OUT/node.log" >&2; die "sipserver-mock exited at start"; }
    sleep 0.1
done
node_rss0=$(awk '/^VmRSS:/ { print $2 }' "/proc/$NODE_PID/status")
{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "net.core.rmem_max=$(cat /proc/sys/net/core/rmem_max)"
    echo "args: -n $N --start-rate $START_RATE --transport $TRANSPORT --t1 $T1"
    echo "loadavg at start: $(cat /proc/loadavg)"
} >"$OUT/env.txt"

log "$N phones register at $NODE_IP:5060 over $TRANSPORT (start rate ${START_RATE:-0}/s, 0 = all at once)"
c0=$(cpu_ticks "$NODE_PID"); b0=$(busy_ticks); t0=$(date +%s.%N)
"$BIN_DIR/softphone-sim" register "$DN_FIRST-$DN_LAST" --registrar "$NODE_IP:5060" \
    --bind "$SIM_IP:0" --transport "$TRANSPORT" --expires 3600 --t1 "$T1" \
    --start-rate "$START_RATE" --until-registered --timeout 120 >"$OUT/summary.json" 2>"$OUT/sim.log" &
SIM_PID=$!
wait "$SIM_PID" || log "softphone-sim exited with an error (see $OUT/sim.log)"
SIM_PID=""
t1=$(date +%s.%N); c1=$(cpu_ticks "$NODE_PID"); b1=$(busy_ticks)
node_rss1=$(awk '/^VmRSS:/ { print $2 }' "/proc/$NODE_PID/status")
metrics=$(curl -sf "http://$NODE_IP:9000/metrics")
metric() { awk -v m="$1" '$1 ~ "^"m"[{ ]" || $1 == m { print $2; exit }' <<<"$metrics"; }
bindings=$(metric drlab_sip_bindings)
requests=$(metric drlab_sip_requests_total)
retransmissions=$(metric drlab_sip_retransmissions_total)
summary=$(grep '"kind":"summary"' "$OUT/summary.json" | tail -1)
[[ -n $summary ]] || die "no summary from softphone-sim (see $OUT/sim.log)"

jget() { grep -o "\"$1\":[^,}]*" <<<"$summary" | head -1 | cut -d: -f2 || true; }
ms=$(jget time_to_all_registered_ms); registered=$(jget registered); rate=$(jget registrations_per_s)
sim_user=$(jget cpu_user_s); sim_sys=$(jget cpu_system_s); sim_rss=$(jget rss_kb); sim_hwm=$(jget max_rss_kb)
failures=$(jget registration_failures)
vcsw=$(jget voluntary_switches); icsw=$(jget involuntary_switches)
awk -v ms="$ms" -v n="$N" -v reg="$registered" -v rate="$rate" -v su="$sim_user" -v ss="$sim_sys" \
    -v srss="$sim_rss" -v shwm="$sim_hwm" -v c="$((c1 - c0))" -v hz="$HZ" -v wall0="$t0" -v wall1="$t1" \
    -v b="$((b1 - b0))" -v nrss0="$node_rss0" -v nrss1="$node_rss1" -v bindings="$bindings" -v fail="$failures" \
    -v load="$(cut -d' ' -f1-3 /proc/loadavg)" -v transport="$TRANSPORT" \
    -v requests="$requests" -v retrans="$retransmissions" -v vcsw="$vcsw" -v icsw="$icsw" '
    BEGIN {
        wall = wall1 - wall0; node_cpu = c / hz; sim_cpu = su + ss
        other = b / hz - node_cpu - sim_cpu; if (other < 0) other = 0
        printf "\n## softphone-sim swarm: %d phones register against one sipserver-mock node (%s)\n\n", n, transport
        printf "| measure | softphone-sim (client) | sipserver-mock (server) |\n|---|---:|---:|\n"
        printf "| phones registered / node bindings | %d / %d | %s |\n", reg, n, bindings
        printf "| time to all registered | %.2f s | |\n", ms / 1000
        printf "| rate | %.0f REGISTER/s | |\n", rate
        printf "| CPU time | %.2f s (user %.2f, sys %.2f) | %.2f s |\n", sim_cpu, su, ss, node_cpu
        printf "| CPU per REGISTER | %.1f µs | %.1f µs |\n", 1e6 * sim_cpu / n, 1e6 * node_cpu / n
        printf "| REGISTER/s one core could carry | %.0f | %.0f |\n", n / sim_cpu, n / node_cpu
        printf "| memory | RSS %.1f MB (peak %.1f MB), %.0f B per phone | RSS %.1f -> %.1f MB |\n", srss / 1024, shwm / 1024, shwm * 1024 / n, nrss0 / 1024, nrss1 / 1024
        printf "| context switches (slept / preempted) | %s / %s | |\n", vcsw, icsw
        printf "| REGISTERs received (retransmissions) | | %s (%s) |\n", requests, retrans
        printf "\nregistration failures (retried): %d; other CPU on the host during the run: %.2f s of %.2f s wall; loadavg %s\n", fail, other, wall, load
        printf "client/server CPU-per-REGISTER ratio: the simulator needs %.2fx less CPU per registration than the node\n", node_cpu / sim_cpu
    }' | tee "$OUT/report.md"
echo "raw outputs: $OUT" >&2
