#!/usr/bin/env bash
# Issue #20's audit at a million records on Tansu, release build: the relay drops 137 ids of one
# bucket and duplicates 50 of another; the test asserts exactly those and prints how long the
# produce and the read took. RECORDS (default 1,000,000) sets the size.
set -euo pipefail
cd "$(dirname "$0")/.."
FRESHWATCH_AUDIT_RECORDS="${RECORDS:-1000000}" cargo test --release --test pipelines \
  on_a_separate_broker_an_audit_of_a_hundred_thousand_records_finds_exactly_what_the_relay_lost \
  -- --nocapture --test-threads=1
