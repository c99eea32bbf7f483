#!/usr/bin/env bash
# Consumer-group watching cost: 1,000 partitions across 50 groups at groups_interval = 5s.
# Prints freshwatch's CPU per minute and per round, and its broker requests per round.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin freshwatch --example groups_bench
./target/release/examples/groups_bench "${1:-60}" target/release/freshwatch
