#!/usr/bin/env bash
# Benchmark of the read-only API (issue 11), on this machine's 2 cores:
#   wrk with 64 connections on loopback, the server and wrk sharing the cores, rate limits
#   raised for the run, against
#   1. `GET /v1/quarters/{q}/programs/{p}` of `outreach serve` over the demo warehouse
#      (target: 40,000 requests/s or more, p99 under 10 ms), and
#   2. a bare axum handler returning a small cached JSON (`examples/bare_axum.rs`),
#   in the same run, and prints the ratio; and
#   3. the dashboard page `GET /` (issue 12; target: 2,000 requests/s or more). Each is run RUNS times (default 3); the medians
#   are reported.
#
# Usage: benches/api_wrk.sh [WORKDIR]   (default: bench-data/, which .gitignore skips)
# Needs: wrk (Debian package `wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-data}
runs=${RUNS:-3}
duration=${DURATION:-15s}
mkdir -p "$work"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --bin outreach --example bare_axum
bin=target/release/outreach

if [ ! -f "$work/api-demo/warehouse/ledger.sqlite" ]; then
  rm -rf "$work/api-demo"
  "$bin" --quiet demo --dir "$work/api-demo" --no-serve > /dev/null
fi
wh="$work/api-demo/warehouse"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$bin" serve --warehouse "$wh" --addr 127.0.0.1:18080 \
  --per-ip-per-second 1e9 --per-ip-burst 1000000000 2> "$work/api-access.log" > /dev/null &
pids+=($!)
target/release/examples/bare_axum 127.0.0.1:18081 > /dev/null &
pids+=($!)
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:18080/healthz > /dev/null && curl -sf http://127.0.0.1:18081/ > /dev/null && break
  sleep 0.2
done

quarter=$(curl -sf http://127.0.0.1:18080/v1/quarters | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["quarter"])')
program=$(curl -sf http://127.0.0.1:18080/v1/programs | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["program_id"])')
route="/v1/quarters/$quarter/programs/$program"
curl -sf "http://127.0.0.1:18080$route" > /dev/null

# wrk's summary: requests/s and the p99 latency in ms.
measure() {
  wrk -t2 -c64 -d"$duration" --latency "$1" > "$work/wrk.txt"
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$work/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $4}' "$work/wrk.txt")
  echo "$rps $p99 ${non2xx:-0}"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

api_rps=(); api_p99=(); bare_rps=(); bare_p99=(); page_rps=(); page_p99=()
for i in $(seq "$runs"); do
  read -r r p n < <(measure "http://127.0.0.1:18080$route")
  [ "$n" = 0 ] || { echo "the API answered $n non-2xx responses" >&2; exit 1; }
  api_rps+=("$r"); api_p99+=("$p")
  read -r r p n < <(measure "http://127.0.0.1:18081/")
  bare_rps+=("$r"); bare_p99+=("$p")
  read -r r p n < <(measure "http://127.0.0.1:18080/")
  [ "$n" = 0 ] || { echo "the dashboard answered $n non-2xx responses" >&2; exit 1; }
  page_rps+=("$r"); page_p99+=("$p")
  echo "run $i: API ${api_rps[-1]} req/s p99 ${api_p99[-1]} ms; bare axum ${bare_rps[-1]} req/s p99 ${bare_p99[-1]} ms; dashboard ${page_rps[-1]} req/s p99 ${page_p99[-1]} ms"
done
a=$(printf '%s\n' "${api_rps[@]}" | median)
ap=$(printf '%s\n' "${api_p99[@]}" | median)
b=$(printf '%s\n' "${bare_rps[@]}" | median)
bp=$(printf '%s\n' "${bare_p99[@]}" | median)
echo "== GET $route: median ${a} req/s, p99 ${ap} ms (target: >= 40000 req/s, p99 < 10 ms)"
echo "== bare axum:  median ${b} req/s, p99 ${bp} ms"
python3 -c "print(f'== ratio API / bare axum: {float($a)/float($b):.2f}')"
d=$(printf '%s\n' "${page_rps[@]}" | median)
dp=$(printf '%s\n' "${page_p99[@]}" | median)
echo "== GET / (dashboard, $(curl -s http://127.0.0.1:18080/ | wc -c) bytes): median ${d} req/s, p99 ${dp} ms (target: >= 2000 req/s)"
echo "access log lines written during the run: $(wc -l < "$work/api-access.log")"
