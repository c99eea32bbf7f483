#!/usr/bin/env bash
# Consumer-group watching cost on the mock cluster. By default 50 groups over 1,000 partitions
# at groups_interval = 5s; `bench/groups.sh 120 large` watches 10,000 groups over 100,000
# partitions at groups_interval = 30s; `bench/groups.sh 120 medium` 2,000 groups over 20,000
# partitions at 30s. A tenth of the groups' commits move every interval.
# Prints freshwatch's CPU per minute and per round, RSS, round time and requests per round.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin freshwatch --example groups_bench
if [ "${2:-}" = large ]; then
  export WATCHED_GROUPS=10000 TOPICS=25000 PARTITIONS_PER_TOPIC=4 INTERVAL_SECONDS=30
elif [ "${2:-}" = medium ]; then
  export WATCHED_GROUPS=2000 TOPICS=5000 PARTITIONS_PER_TOPIC=4 INTERVAL_SECONDS=30
fi
./target/release/examples/groups_bench "${1:-60}" target/release/freshwatch
