#!/usr/bin/env bash
# Benchmark of the read-only API (issues 11 and 23), on this machine's 2 cores:
#   wrk with 64 connections on loopback, the server and wrk sharing the cores, rate limits
#   raised for the run and the access log on, against
#   1. the funder's route `GET /v1/quarters/{q}/programs/{p}` of `outreach serve` over the
#      demo warehouse, and `GET /healthz`; each against
#   2. a bare axum handler serving the same bytes (`examples/bare_axum.rs`, handed the two
#      bodies the API served, checked byte for byte), in the same run; and prints each
#      route's ratio (issue 23's target: >= 0.8, p99 < 5 ms); for the diagnosis, a second
#      bare handler sends the API's own response headers with the same bytes; and
#   3. the dashboard page `GET /` (issue 12; target: 2,000 requests/s or more).
#   Each is run RUNS times (default 3); the medians are reported.
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

api=http://127.0.0.1:18080
bare=http://127.0.0.1:18081
"$bin" serve --warehouse "$wh" --addr 127.0.0.1:18080 \
  --per-ip-per-second 1e9 --per-ip-burst 1000000000 2> "$work/api-access.log" > /dev/null &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "$api/healthz" > /dev/null && break
  sleep 0.2
done

quarter=$(curl -sf "$api/v1/quarters" | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["quarter"])')
program=$(curl -sf "$api/v1/programs" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["program_id"])')
route="/v1/quarters/$quarter/programs/$program"
# The bodies the API serves, which the bare handlers serve too.
curl -sf "$api$route" -o "$work/route.json"
curl -sf "$api/healthz" -o "$work/healthz.json"
target/release/examples/bare_axum 127.0.0.1:18081 \
  "$route=$work/route.json" "/healthz=$work/healthz.json" > /dev/null &
pids+=($!)
# A second baseline, for the diagnosis only: bare handlers sending the API's own response
# headers too (its security, CORS and cache headers), to tell their bytes' cost from the
# API's work per request.
curl -sf -D "$work/route.headers" -o /dev/null "$api$route"
curl -sf -D "$work/healthz.headers" -o /dev/null "$api/healthz"
headed=http://127.0.0.1:18082
target/release/examples/bare_axum 127.0.0.1:18082 \
  "$route=$work/route.json+$work/route.headers" \
  "/healthz=$work/healthz.json+$work/healthz.headers" > /dev/null &
pids+=($!)
for _ in $(seq 100); do
  curl -sf "$bare/healthz" > /dev/null && curl -sf "$headed/healthz" > /dev/null && break
  sleep 0.2
done
for path in "$route" /healthz; do
  curl -sf "$api$path" -o "$work/api-body"
  curl -sf "$bare$path" -o "$work/bare-body"
  cmp -s "$work/api-body" "$work/bare-body" || { echo "bare axum does not serve the bytes the API serves at $path" >&2; exit 1; }
done

# wrk's summary: requests/s, the p99 latency in ms, and the non-2xx answers.
measure() {
  wrk -t2 -c64 -d"$duration" --latency "$1" > "$work/wrk.txt"
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$work/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $4}' "$work/wrk.txt")
  echo "$rps $p99 ${non2xx:-0}"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

api_rps=(); api_p99=(); bare_rps=(); bare_p99=()
health_rps=(); health_p99=(); bare_health_rps=(); bare_health_p99=()
headed_rps=(); headed_health_rps=()
page_rps=(); page_p99=()
for i in $(seq "$runs"); do
  read -r r p n < <(measure "$api$route")
  [ "$n" = 0 ] || { echo "the API answered $n non-2xx responses" >&2; exit 1; }
  api_rps+=("$r"); api_p99+=("$p")
  read -r r p n < <(measure "$bare$route")
  bare_rps+=("$r"); bare_p99+=("$p")
  read -r r p n < <(measure "$api/healthz")
  [ "$n" = 0 ] || { echo "/healthz answered $n non-2xx responses" >&2; exit 1; }
  health_rps+=("$r"); health_p99+=("$p")
  read -r r p n < <(measure "$bare/healthz")
  bare_health_rps+=("$r"); bare_health_p99+=("$p")
  read -r r p n < <(measure "$headed$route")
  headed_rps+=("$r")
  read -r r p n < <(measure "$headed/healthz")
  headed_health_rps+=("$r")
  read -r r p n < <(measure "$api/")
  [ "$n" = 0 ] || { echo "the dashboard answered $n non-2xx responses" >&2; exit 1; }
  page_rps+=("$r"); page_p99+=("$p")
  echo "run $i: route ${api_rps[-1]} req/s p99 ${api_p99[-1]} ms (bare ${bare_rps[-1]}, p99 ${bare_p99[-1]} ms);" \
    "healthz ${health_rps[-1]} req/s p99 ${health_p99[-1]} ms (bare ${bare_health_rps[-1]}, p99 ${bare_health_p99[-1]} ms);" \
    "dashboard ${page_rps[-1]} req/s p99 ${page_p99[-1]} ms"
done
med() { printf '%s\n' "$@" | median; }
report() { # name, bytes, api rps, api p99, bare rps, bare p99
  python3 -c "
name, size, a, ap, b, bp = '$1', '$2', float('$3'), '$4', float('$5'), '$6'
print(f'== {name} ({size} bytes): median {a:.0f} req/s, p99 {ap} ms; bare axum, same bytes: {b:.0f} req/s, p99 {bp} ms; ratio {a / b:.2f} (target >= 0.8, p99 < 5 ms)')"
}
report "GET $route" "$(wc -c < "$work/route.json")" \
  "$(med "${api_rps[@]}")" "$(med "${api_p99[@]}")" "$(med "${bare_rps[@]}")" "$(med "${bare_p99[@]}")"
report "GET /healthz" "$(wc -c < "$work/healthz.json")" \
  "$(med "${health_rps[@]}")" "$(med "${health_p99[@]}")" "$(med "${bare_health_rps[@]}")" "$(med "${bare_health_p99[@]}")"
python3 -c "
r, h = float('$(med "${headed_rps[@]}")'), float('$(med "${headed_health_rps[@]}")')
a, ha = float('$(med "${api_rps[@]}")'), float('$(med "${health_rps[@]}")')
print(f'   diagnosis: bare axum sending the API\'s own headers too: route {r:.0f} req/s (API / it {a / r:.2f}), /healthz {h:.0f} req/s (API / it {ha / h:.2f})')"
d=$(med "${page_rps[@]}")
dp=$(med "${page_p99[@]}")
echo "== GET / (dashboard, $(curl -s "$api/" | wc -c) bytes): median ${d} req/s, p99 ${dp} ms (target: >= 2000 req/s)"
echo "access log lines written during the run: $(wc -l < "$work/api-access.log")"
