#!/usr/bin/env bash
# Benchmarks of the foundation, on this machine's 2 cores:
#  1. `outreach synth` of 1,000,000 persons (target: under 60 s);
#  2. `outreach ingest` of a 5,000,000-row overdose_events file with full validation, against
#     DuckDB's plain, unvalidated CSV-to-Parquet conversion of the same file with 2 threads
#     (target: no slower than DuckDB; peak memory under 1 GiB);
#  3. a check that DuckDB and pyarrow read the warehouse's Parquet with the right row count.
#
# Usage: benches/ingest_vs_duckdb.sh [WORKDIR]   (default: bench-data/, which .gitignore skips)
# Needs: python3 with `pip install duckdb pyarrow`, and GNU time at /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-bench-data}
mkdir -p "$work"
cargo build --release --quiet
bin=target/release/outreach

python3 -c 'import duckdb, pyarrow' 2>/dev/null || python3 -m pip install --quiet duckdb pyarrow

peak() { # prints "seconds peak_MiB" of a command
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$@" > "$work/out.txt"
  awk '{printf "%s %.0f\n", $1, $2/1024}' "$work/time.txt"
}

echo "== synth: 1,000,000 persons"
rm -rf "$work/synth1m"
read -r s m < <(peak "$bin" --quiet synth --out "$work/synth1m" --persons 1000000 --start 2023Q1 --quarters 8 --seed 1)
rows=$(tail -n 1 "$work/out.txt")
echo "synth 1M persons: ${s}s, peak ${m} MiB; $rows"

echo "== preparing a 5,000,000-row overdose_events file"
if [ ! -f "$work/events5m/overdose_events.csv" ] || [ "$(wc -l < "$work/events5m/overdose_events.csv")" -ne 5000001 ]; then
  rm -rf "$work/synth5m"
  # 4,000,000 persons give about 5.1M overdose events; the first 5,000,000 are kept.
  "$bin" --quiet synth --out "$work/synth5m" --persons 4000000 --start 2023Q1 --quarters 8 --seed 2 > /dev/null
  mkdir -p "$work/events5m"
  head -n 5000001 "$work/synth5m/overdose_events.csv" > "$work/events5m/overdose_events.csv"
  cp "$work/synth5m/programs.csv" "$work/events5m/programs.csv"
  rm -rf "$work/synth5m"
fi
lines=$(($(wc -l < "$work/events5m/overdose_events.csv") - 1))
size=$(du -m "$work/events5m/overdose_events.csv" | cut -f1)
echo "rows: $lines, size: ${size} MiB"

cat > "$work/duck.py" <<PY
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads=2")
con.execute("COPY (SELECT * FROM read_csv_auto('$work/events5m/overdose_events.csv')) TO '$work/duck.parquet' (FORMAT parquet, COMPRESSION zstd)")
PY

# The two tools run in turn, five times each, so that the machine's drift hits both alike;
# the medians are compared.
echo "== DuckDB: COPY (SELECT * FROM read_csv_auto(...)) TO parquet, zstd, 2 threads"
echo "== outreach ingest: full validation, 5,000,000 rows (programs loaded first, untimed)"
duck=()
ours=()
for i in 1 2 3 4 5; do
  rm -f "$work/duck.parquet"
  read -r s m < <(peak python3 "$work/duck.py")
  echo "run $i duckdb:   ${s}s, peak ${m} MiB"
  duck+=("$s")
  rm -rf "$work/wh"
  "$bin" --quiet ingest --warehouse "$work/wh" "$work/events5m/programs.csv" > /dev/null
  read -r s m < <(peak "$bin" --quiet ingest --warehouse "$work/wh" "$work/events5m/overdose_events.csv")
  echo "run $i outreach: ${s}s, peak ${m} MiB"
  ours+=("$s")
done
grep -E 'overdose_events|Committed' "$work/out.txt" || true
python3 -c "
import statistics as st
d = [float(x) for x in '${duck[*]}'.split()]
o = [float(x) for x in '${ours[*]}'.split()]
print(f'median: outreach {st.median(o):.2f}s, duckdb {st.median(d):.2f}s, ratio {st.median(o)/st.median(d):.2f}; best: outreach {min(o):.2f}s, duckdb {min(d):.2f}s, ratio {min(o)/min(d):.2f}')
"

echo "== other readers: DuckDB and pyarrow read the warehouse's Parquet"
python3 - <<PY
import duckdb, pyarrow.dataset as ds
n = duckdb.sql("SELECT count(*) FROM read_parquet('$work/wh/tables/overdose_events/*/*.parquet')").fetchall()[0][0]
t = ds.dataset('$work/wh/tables/overdose_events', format='parquet', partitioning='hive').to_table()
print(f"duckdb rows {n}, pyarrow rows {t.num_rows}; pyarrow types: event_date={t.schema.field('event_date').type}, sex={t.schema.field('sex').type}, fatal={t.schema.field('fatal').type}")
assert n == t.num_rows == $lines, "row counts differ"
PY
