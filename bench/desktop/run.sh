#!/usr/bin/env bash
# Desktop benchmark: N desktop-sim desktops (one process, each with its own cookie jar) log in
# through one proxy (`sticky learn` on JSESSIONID) in front of two gws-mock nodes on one
# sipserver-mock node — every server in its own process, release builds, on 127.0.71.x so a lab
# on the standard addresses is not disturbed. Each login is the whole WWE sequence: Basic-auth
# probe, CometD handshake + 4 subscriptions + first connect, StartContactCenterSession
# (RegisterAddress + AgentLogin on the SIP node), state load; then a parked long-poll.
# Prints the time until every desktop is logged in, the login rate, and the CPU and memory of
# the desktop-sim process next to the servers' CPU, and how many times cheaper the simulator is
# than the servers together and than the busiest one (the target: at least 3x).
#
#   bench/desktop/run.sh [--desktops 5000] [--max-logging-in 500] [--rate 0]
#                        [--transport long-polling|websocket] [--no-build]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
DESKTOPS=5000
MAX_LOGGING_IN=500
RATE=0
TRANSPORT=long-polling
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --desktops) DESKTOPS=$2; shift 2 ;;
        --max-logging-in) MAX_LOGGING_IN=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --transport) TRANSPORT=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown flag: $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p desktop-sim -p proxy -p gws-mock -p sipserver-mock
fi
# Each desktop holds a long-poll: N connections per hop (the proxy holds 2N).
ulimit -n 20000 2>/dev/null || true

FIRST=10000
LAST=$((FIRST + DESKTOPS - 1))
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/ss1.toml" <<TOML
name = "ss1"
dc = "dc1"
address = "127.0.71.1"
[[dns]]
range = "$FIRST-$LAST"
kind = "pstn"
external = "+1555{dn}"
TOML
for i in 1 2; do
cat > "$WORK/gws$i.toml" <<TOML
name = "gws$i"
dc = "dc1"
address = "127.0.71.1$i"
[[sip_nodes]]
name = "ss1"
tlib = "127.0.71.1:3000"
[[user_ranges]]
dns = "$FIRST-$LAST"
name = "agent{dn}"
password = "password"
TOML
done
cat > "$WORK/proxy.toml" <<TOML
name = "proxy-bench"
listen = "127.0.71.10:8080"
[[upstream]]
name = "gws_dc1"
sticky = "learn"
sticky_cookie = "JSESSIONID"
keepalive = 1024
[[upstream.server]]
name = "gws1"
address = "127.0.71.11:8090"
[[upstream.server]]
name = "gws2"
address = "127.0.71.12:8090"
TOML

export RUST_LOG=warn
"$BIN/sipserver-mock" --config "$WORK/ss1.toml" > "$WORK/ss1.log" 2>&1 & PIDS+=($!)
"$BIN/gws-mock" --config "$WORK/gws1.toml" > "$WORK/gws1.log" 2>&1 & PIDS+=($!)
"$BIN/gws-mock" --config "$WORK/gws2.toml" > "$WORK/gws2.log" 2>&1 & PIDS+=($!)
"$BIN/proxy" --config "$WORK/proxy.toml" > "$WORK/proxy.log" 2>&1 & PIDS+=($!)
SERVERS=("${PIDS[@]}")

# Ready when every server answers (the GWS nodes once their T-Lib link is up).
for _ in $(seq 100); do
    ok=1
    for a in 127.0.71.1:9000 127.0.71.11:9000 127.0.71.12:9000; do
        curl -sf "http://$a/state" > /dev/null || ok=0
    done
    curl -sf http://127.0.71.10:8080/api/v2/diagnostics/version > /dev/null || ok=0
    for a in 127.0.71.11:9000 127.0.71.12:9000; do
        curl -s "http://$a/state" | grep -q '"tlib_link":"ss1"' || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
done
[ "$ok" = 1 ] || { echo "servers did not come up; logs in $WORK" >&2; cat "$WORK"/*.log >&2; exit 1; }

TICK=$(getconf CLK_TCK)
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A BEFORE
for p in "${SERVERS[@]}"; do BEFORE[$p]=$(cpu_of "$p"); done

echo "desktop-sim swarm: $DESKTOPS desktops (agent$FIRST-agent$LAST), max $MAX_LOGGING_IN logging in, rate $RATE/s, CometD over $TRANSPORT"
/usr/bin/time -f '%U %S %M %e' -o "$WORK/time" \
    "$BIN/desktop-sim" swarm --users "agent$FIRST-agent$LAST" --url http://127.0.71.10:8080 \
    --max-logging-in "$MAX_LOGGING_IN" --rate "$RATE" --transport "$TRANSPORT" \
    --exit-when-logged-in > "$WORK/report.json"

read -r USER_S SYS_S MAX_KB WALL_S < "$WORK/time"
SERVER_CPU=()
for i in "${!SERVERS[@]}"; do
    p=${SERVERS[$i]}
    name=$(echo ss1 gws1 gws2 proxy | cut -d' ' -f$((i + 1)))
    SERVER_CPU+=("$name=$(awk -v t="$(( $(cpu_of "$p") - BEFORE[$p] ))" -v hz="$TICK" 'BEGIN{printf "%.2f", t/hz}')")
done
python3 - "$WORK/report.json" "$USER_S" "$SYS_S" "$MAX_KB" "$WALL_S" "$DESKTOPS" "${SERVER_CPU[@]}" <<'PY'
import json, sys
report = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
user, sys_, max_kb, wall, n = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
servers = {name: float(cpu) for name, cpu in (a.split("=") for a in sys.argv[7:])}
s = report["summary"]
sim = user + sys_
logins = max(s["logins"], 1)
print(f"logged in:             {s['connected']} of {n} (login failed {s['login_failed']})")
print(f"time to all logged in: {report['all_logged_in_s']:.2f} s")
print(f"login rate:            {report['logins_per_s']:.0f} desktops/s")
print(f"desktop-sim CPU:       {user:.2f} s user + {sys_:.2f} s sys over {wall:.2f} s ({sim / wall * 100:.0f}% of one core), {sim / logins * 1e6:.0f} us per login")
print(f"desktop-sim memory:    {max_kb / 1024:.0f} MiB max RSS ({max_kb / n:.1f} KiB per desktop)")
for name, cpu in servers.items():
    print(f"server {name:<6} CPU:     {cpu:.2f} s")
total = sum(servers.values())
busiest = max(servers, key=servers.get)
print(f"servers' CPU:          {total:.2f} s, {total / logins * 1e6:.0f} us per login")
# The target: the simulator must cost at most a third of what the servers it drives cost.
print(f"ratio servers/sim:     {total / sim:.1f}x (all servers), {servers[busiest] / sim:.1f}x ({busiest}, the busiest)")
PY
