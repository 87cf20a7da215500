#!/usr/bin/env bash
# Proxy benchmark: wrk -> our `proxy` (127.0.7.2:8080) and wrk -> nginx (127.0.7.3:8080), both in
# front of the SAME upstream (an nginx `return 200 "ok\n"` on 127.0.7.1:8081), same run.
# See bench/proxy/README.md.
#
#   bench/proxy/run.sh [--conns 50,200] [--duration 10] [--warmup 3] [--rounds N] [--workers N]
#                      [--access-log] [--no-build] [--callgrind] [--nice N] [--post]
#
#   --conns LIST     wrk connection counts, one round each (default 50,200)
#   --duration S     measured wrk run per proxy and round (default 10)
#   --warmup S       unmeasured wrk run before each measured one (default 3)
#   --rounds N       measured runs per proxy and connection count, alternating which proxy goes
#                    first (default 3); the table gives the median of each figure, since other
#                    jobs on a shared machine move single runs a lot
#   --workers N      worker_processes of both proxies (default 1): nginx runs N single-threaded
#                    worker processes, ours N runtime threads (1 = one single-threaded event loop)
#   --access-log     keep our proxy's per-request INFO log line (default: RUST_LOG=warn, the
#                    equivalent of nginx `access_log off`; the log costs roughly a third of req/s)
#   --no-build       use the existing $CARGO_TARGET_DIR/release/proxy (default target/)
#   --nice N         run wrk, the upstream and both proxies at niceness N (e.g. -10): other jobs
#                    on a shared machine then take less CPU from the measured processes; the
#                    same for both proxies (default 0)
#   --callgrind      instead of the rounds: both proxies run under valgrind's callgrind, each
#                    gets one `wrk -c50 -d DURATION`, and the table gives the instructions each
#                    executed per request (user space, start-up included; repeatable on a busy
#                    machine, unlike requests/s)
#   --post           every request is a POST with a 200-byte JSON body (wrk -s post.lua), like
#                    the GWS REST and CometD traffic, instead of a GET
#
# Must run as root (apt-get for missing nginx/wrk). Raw wrk outputs and configs go to
# bench-out/proxy/<timestamp>/. Everything it starts is killed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONNS=50,200
DURATION=10
WARMUP=3
ROUNDS=3
WORKERS=1
BUILD=1
RUSTLOG=warn
CALLGRIND=0
NICE=0
POST=0
while [ $# -gt 0 ]; do
    case "$1" in
        --conns) CONNS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --access-log) RUSTLOG=info; shift ;;
        --no-build) BUILD=0; shift ;;
        --callgrind) CALLGRIND=1; shift ;;
        --nice) NICE=$2; shift 2 ;;
        --post) POST=1; shift ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

UP=127.0.7.1:8081
OURS=127.0.7.2:8080
NGX=127.0.7.3:8080
COOKIE="Cookie: JSESSIONID=bench-session-1"

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

# --- packages ---------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[ "$CALLGRIND" = 0 ] || command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- build ------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -p proxy)
fi
# Same place cargo puts it: honour CARGO_TARGET_DIR (relative to the workspace, as cargo does).
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
PROXY=$TARGET_DIR/release/proxy
[ -x "$PROXY" ] || { echo "missing $PROXY (build it or drop --no-build)" >&2; exit 1; }

OUT=$ROOT/bench-out/proxy/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

# What wrk sends: GET, or with --post a POST with a 200-byte JSON body.
WRK_SCRIPT=(); MODE=GET
if [ "$POST" = 1 ]; then
    cat > "$OUT/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"data":"' .. string.rep("x", 189) .. '"}'
LUA
    WRK_SCRIPT=(-s "$OUT/post.lua"); MODE="POST (200-byte body)"
fi

# --- cleanup ----------------------------------------------------------------------------------
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # host:port
    local hp=$1 i
    # Up to 10 s: a proxy under valgrind takes a few seconds to start.
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on $hp" >&2; return 1
}

# --- nginx instances (each its own prefix and temp dirs) --------------------------------------
nginx_conf() { # dir, worker processes, http-block body
    local dir=$1 workers=$2 body=$3 master=off
    # Without a master process nginx runs one process whatever worker_processes says.
    [ "$workers" -gt 1 ] && master=on
    mkdir -p "$dir/logs" "$dir/tmp"
    cat > "$dir/nginx.conf" <<NGX
daemon off;
master_process $master;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/client;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
$body
}
NGX
}

nginx_conf "$OUT/upstream" 1 "
    server {
        listen $UP;
        location / { default_type text/plain; return 200 \"ok\\n\"; }
    }"
nginx_conf "$OUT/nginx" "$WORKERS" "
    upstream app {
        hash \$cookie_JSESSIONID consistent;
        server $UP max_fails=1 fail_timeout=10s;
        keepalive 64;
    }
    server {
        listen $NGX;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            # Ours always adds it (nginx users configure it in front of GWS): same work for both.
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }"

cat > "$OUT/proxy.toml" <<TOML
name = "bench"
worker_processes = $WORKERS
listen = "$OURS"
proxy_pass = "app"

[[upstream]]
name = "app"
sticky = "hash"
sticky_cookie = "JSESSIONID"
keepalive = 64

[[upstream.server]]
name = "up1"
address = "$UP"
max_fails = 1
fail_timeout = "10s"
TOML

# With --callgrind both proxies (not the upstream) run under callgrind.
CG_NGX=(); CG_OURS=()
if [ "$CALLGRIND" = 1 ]; then
    CG_NGX=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-nginx.out")
    CG_OURS=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-ours.out")
fi
# Everything measured runs at the same niceness (--nice).
RUN=(nice -n "$NICE")
"${RUN[@]}" "$NGINX" -p "$OUT/upstream" -c "$OUT/upstream/nginx.conf" 2>"$OUT/upstream/stderr.log" &
PIDS+=($!)
"${RUN[@]}" "${CG_NGX[@]}" "$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" 2>"$OUT/nginx/stderr.log" &
NGX_PID=$!
PIDS+=($!)
RUST_LOG=$RUSTLOG "${RUN[@]}" "${CG_OURS[@]}" "$PROXY" --config "$OUT/proxy.toml" >"$OUT/proxy.log" 2>&1 &
OURS_PID=$!
PIDS+=($!)
wait_port "$UP"; wait_port "$NGX"; wait_port "$OURS"

# Sanity: both answer "ok" through the same upstream.
for hp in "$OURS" "$NGX"; do
    body=$(curl -fsS -H "$COOKIE" "http://$hp/" 2>/dev/null || true)
    [ "$body" = ok ] || { echo "http://$hp/ answered '$body', expected 'ok'" >&2; exit 1; }
done

# --- instructions per request (--callgrind) ---------------------------------------------------
if [ "$CALLGRIND" = 1 ]; then
    declare -A REQS
    for name in ours nginx; do
        hp=$OURS; [ "$name" = nginx ] && hp=$NGX
        f=$OUT/wrk-$name-callgrind.txt
        "${RUN[@]}" wrk -t1 -c50 -d"${DURATION}s" "${WRK_SCRIPT[@]}" -H "$COOKIE" "http://$hp/" >"$f" 2>&1
        REQS[$name]=$(awk '/requests in/ {print $1}' "$f")
    done
    # Callgrind writes its totals when the process exits: ours stops on SIGINT, nginx on SIGQUIT.
    kill -INT "$OURS_PID"; kill -QUIT "$NGX_PID"
    wait "$OURS_PID" "$NGX_PID" 2>/dev/null || true
    {
        echo "proxy instructions per request $(date -u +%FT%TZ): callgrind, $MODE, wrk -t1 -c50 -d${DURATION}s," \
             "our proxy RUST_LOG=$RUSTLOG, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo
        echo "| proxy | requests | instructions | per request |"
        echo "|---|---:|---:|---:|"
        for name in ours nginx; do
            ir=$(awk '/^summary:/ {print $2; exit}' "$OUT/callgrind-$name.out"*)
            echo "| $name | ${REQS[$name]} | $ir | $((ir / REQS[$name])) |"
        done
        echo
        echo "raw: $OUT"
    } | tee "$OUT/summary.md"
    exit 0
fi

# --- measure ----------------------------------------------------------------------------------
# wrk latency text -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

# Median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); printf "%s", (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'; }

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A RPS P50 P99 ERRS
for c in ${CONNS//,/ }; do
    declare -A all_rps=() all_p50=() all_p99=()
    for r in $(seq 1 "$ROUNDS"); do
        order="ours nginx"; [ $((r % 2)) = 0 ] && order="nginx ours"
        for name in $order; do
            hp=$OURS; [ "$name" = nginx ] && hp=$NGX
            "${RUN[@]}" wrk -t1 -c"$c" -d"${WARMUP}s" "${WRK_SCRIPT[@]}" -H "$COOKIE" "http://$hp/" >"$OUT/wrk-$name-c$c-r$r-warmup.txt" 2>&1
            f=$OUT/wrk-$name-c$c-r$r.txt
            "${RUN[@]}" wrk -t1 -c"$c" -d"${DURATION}s" --latency "${WRK_SCRIPT[@]}" -H "$COOKIE" "http://$hp/" >"$f" 2>&1
            rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$f")
            p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
            p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
            all_rps[$name]+="$rps "; all_p50[$name]+="$p50 "; all_p99[$name]+="$p99 "
            ERRS[$name$c]+=$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' "$f")
            echo "  round $r $name c=$c: $rps req/s, p99 $p99 ms (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        done
    done
    for name in ours nginx; do
        # shellcheck disable=SC2086 # word splitting wanted: one argument per round
        RPS[$name$c]=$(median ${all_rps[$name]})
        # shellcheck disable=SC2086
        P50[$name$c]=$(median ${all_p50[$name]})
        # shellcheck disable=SC2086
        P99[$name$c]=$(median ${all_p99[$name]})
    done
done

{
    echo "proxy benchmark $(date -u +%FT%TZ), $(nproc) CPUs, $MODE, wrk -t1 -d${DURATION}s (warm-up ${WARMUP}s)," \
         "median of $ROUNDS rounds," \
         "worker_processes $WORKERS for both, our proxy RUST_LOG=$RUSTLOG, nice $NICE," \
         "load before: $LOAD"
    echo
    echo "| proxy | connections | requests/s | p50 (ms) | p99 (ms) | ratio ours/nginx (req/s; p99) |"
    echo "|---|---:|---:|---:|---:|---|"
    for c in ${CONNS//,/ }; do
        r=$(awk -v a="${RPS[ours$c]}" -v b="${RPS[nginx$c]}" 'BEGIN {printf (b > 0 ? "%.2f" : "n/a"), a / (b > 0 ? b : 1)}')
        l=$(awk -v a="${P99[ours$c]}" -v b="${P99[nginx$c]}" 'BEGIN {printf (b > 0 ? "%.2f" : "n/a"), a / (b > 0 ? b : 1)}')
        echo "| ours | $c | ${RPS[ours$c]} | ${P50[ours$c]} | ${P99[ours$c]} | $r; $l |"
        echo "| nginx | $c | ${RPS[nginx$c]} | ${P50[nginx$c]} | ${P99[nginx$c]} | |"
    done
    for k in "${!ERRS[@]}"; do
        if [ -n "${ERRS[$k]}" ]; then echo "errors $k: ${ERRS[$k]}"; fi
    done
    echo
    echo "raw: $OUT"
} | tee "$OUT/summary.md"
