#!/usr/bin/env bash
# Consumer-group watching cost on the mock cluster. By default 50 groups over 1,000 partitions
# at groups_interval = 5s; `bench/groups.sh 120 large` watches 10,000 groups over 100,000
# partitions (1,000 topics x 100, each topic read by ten groups: 1,000,000 committed offsets)
# at groups_interval = 30s (`large-narrow`: 25,000 topics x 4, one group per 2.5 topics); `bench/groups.sh 120 medium` 2,000 groups over 20,000
# partitions at 30s. A tenth of the groups' commits move every interval.
# Prints freshwatch's CPU per minute and per round, RSS, round time and requests per round.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --bin freshwatch --example groups_bench
if [ "${2:-}" = large ]; then
  # 1,000 topics of 100 partitions, ten groups reading each: the mock cluster looks topics up
  # linearly, so 25,000 topics of 4 (the shape before) left it unable to answer (BENCHMARKS §5).
  export WATCHED_GROUPS=10000 TOPICS=1000 PARTITIONS_PER_TOPIC=100 INTERVAL_SECONDS=30
elif [ "${2:-}" = large-narrow ]; then
  export WATCHED_GROUPS=10000 TOPICS=25000 PARTITIONS_PER_TOPIC=4 INTERVAL_SECONDS=30
elif [ "${2:-}" = medium ]; then
  export WATCHED_GROUPS=2000 TOPICS=5000 PARTITIONS_PER_TOPIC=4 INTERVAL_SECONDS=30
fi
./target/release/examples/groups_bench "${1:-60}" target/release/freshwatch
