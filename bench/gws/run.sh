#!/usr/bin/env bash
# GWS benchmark: N concurrent long-polling CometD desktops on one gws-mock node (the release
# binary, its own process), fed T-Events by a scripted SIP node. Prints the latency from a
# T-Event leaving the SIP node to the CometD delivery (p50/p90/p99/max) and gws-mock's memory
# per session (RSS growth / sessions). See crates/gws-mock/examples/gws_bench.rs.
#
#   bench/gws/run.sh [--desktops 5000] [--rate 1000] [--seconds 10] [--no-build]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BUILD=1
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --desktops|--rate|--seconds) ARGS+=("$1" "$2"); shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "unknown flag: $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p gws-mock --bin gws-mock --example gws_bench
fi
# 5,000 desktops hold 5,000 connections on each side.
ulimit -n 20000 2>/dev/null || true
"$TARGET/release/examples/gws_bench" --gws-bin "$TARGET/release/gws-mock" "${ARGS[@]}"
