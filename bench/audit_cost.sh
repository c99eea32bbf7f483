#!/usr/bin/env bash
# Instructions per record of the JSON split path, plain and with a completeness audit, counted
# by callgrind (repeatable on a loaded machine): each mode at 1 and 11 rounds of 10,000 records,
# the difference divided by 100,000 records.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --example audit_cost
bin=target/release/examples/audit_cost
count() {
  local out
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" >/dev/null 2>&1
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
  rm -f "$out"
}
declare -A per_record
for mode in plain audited; do
  low=$(count "$mode" 1)
  high=$(count "$mode" 11)
  per_record[$mode]=$(( (high - low) / 100000 ))
  echo "$mode: ${per_record[$mode]} instructions per record"
done
echo "audit adds $(( (per_record[audited] - per_record[plain]) * 1000 / per_record[plain] )) per mille per record"
