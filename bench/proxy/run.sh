#!/usr/bin/env bash
# Proxy benchmark: wrk -> our `proxy` (127.0.7.2:8080) and wrk -> nginx (127.0.7.3:8080), both in
# front of the SAME upstream (an nginx `return 200 "ok\n"` on 127.0.7.1:8081), same run.
# See bench/proxy/README.md.
#
#   bench/proxy/run.sh [--conns 50,200] [--duration 10] [--warmup 3] [--threads N] [--no-build]
#
#   --conns LIST     wrk connection counts, one round each (default 50,200)
#   --duration S     measured wrk run per proxy and round (default 10)
#   --warmup S       unmeasured wrk run before each measured one (default 3)
#   --threads N      TOKIO_WORKER_THREADS for our proxy (default 1, to match nginx's 1 worker;
#                    the binary has no flag: it uses #[tokio::main], i.e. one thread per CPU
#                    unless TOKIO_WORKER_THREADS is set; 0 = leave it unset)
#   --access-log     keep our proxy's per-request INFO log line (default: RUST_LOG=warn, the
#                    equivalent of nginx `access_log off`; the log costs roughly a third of req/s)
#   --no-build       use the existing target/release/proxy
#
# Must run as root (apt-get for missing nginx/wrk). Raw wrk outputs and configs go to
# bench-out/proxy/<timestamp>/. Everything it starts is killed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CONNS=50,200
DURATION=10
WARMUP=3
THREADS=1
BUILD=1
RUSTLOG=warn
while [ $# -gt 0 ]; do
    case "$1" in
        --conns) CONNS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --access-log) RUSTLOG=info; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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
PROXY=$ROOT/target/release/proxy
[ -x "$PROXY" ] || { echo "missing $PROXY (build it or drop --no-build)" >&2; exit 1; }

OUT=$ROOT/bench-out/proxy/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

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
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on $hp" >&2; return 1
}

# --- nginx instances (each its own prefix and temp dirs) --------------------------------------
nginx_conf() { # dir, http-block body
    local dir=$1 body=$2
    mkdir -p "$dir/logs" "$dir/tmp"
    cat > "$dir/nginx.conf" <<NGX
daemon off;
master_process off;
worker_processes 1;
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

nginx_conf "$OUT/upstream" "
    server {
        listen $UP;
        location / { default_type text/plain; return 200 \"ok\\n\"; }
    }"
nginx_conf "$OUT/nginx" "
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
        }
    }"

cat > "$OUT/proxy.toml" <<TOML
name = "bench"
worker_processes = 1
listen = "$OURS"
proxy_pass = "app"

[[upstream]]
name = "app"
sticky = "hash"
sticky_cookie = "JSESSIONID"

[[upstream.server]]
name = "up1"
address = "$UP"
max_fails = 1
fail_timeout = "10s"
TOML

"$NGINX" -p "$OUT/upstream" -c "$OUT/upstream/nginx.conf" 2>"$OUT/upstream/stderr.log" &
PIDS+=($!)
"$NGINX" -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" 2>"$OUT/nginx/stderr.log" &
PIDS+=($!)
if [ "$THREADS" != 0 ]; then export TOKIO_WORKER_THREADS=$THREADS; fi
RUST_LOG=$RUSTLOG "$PROXY" --config "$OUT/proxy.toml" >"$OUT/proxy.log" 2>&1 &
PIDS+=($!)
wait_port "$UP"; wait_port "$NGX"; wait_port "$OURS"

# Sanity: both answer "ok" through the same upstream.
for hp in "$OURS" "$NGX"; do
    body=$(curl -fsS -H "$COOKIE" "http://$hp/" 2>/dev/null || true)
    [ "$body" = ok ] || { echo "http://$hp/ answered '$body', expected 'ok'" >&2; exit 1; }
done

# --- measure ----------------------------------------------------------------------------------
# wrk latency text -> milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A RPS P50 P99 ERRS
for c in ${CONNS//,/ }; do
    for name in ours nginx; do
        hp=$OURS; [ "$name" = nginx ] && hp=$NGX
        wrk -t1 -c"$c" -d"${WARMUP}s" -H "$COOKIE" "http://$hp/" >"$OUT/wrk-$name-c$c-warmup.txt" 2>&1
        f=$OUT/wrk-$name-c$c.txt
        wrk -t1 -c"$c" -d"${DURATION}s" --latency -H "$COOKIE" "http://$hp/" >"$f" 2>&1
        RPS[$name$c]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$f")
        P50[$name$c]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
        P99[$name$c]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
        ERRS[$name$c]=$(awk '/Non-2xx|Socket errors/ {sub(/^ +/, ""); printf "%s; ", $0}' "$f")
        echo "  $name c=$c: ${RPS[$name$c]} req/s, p99 ${P99[$name$c]} ms" >&2
    done
done

{
    echo "proxy benchmark $(date -u +%FT%TZ), $(nproc) CPUs, wrk -t1 -d${DURATION}s (warm-up ${WARMUP}s)," \
         "our proxy TOKIO_WORKER_THREADS=${TOKIO_WORKER_THREADS:-unset} RUST_LOG=$RUSTLOG, nginx 1 worker," \
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
