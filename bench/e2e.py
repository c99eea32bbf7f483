#!/usr/bin/env python3
"""End-to-end consumption benchmark: freshwatch against kcat on the same broker.

Started by bench/e2e.sh, which builds the release binaries first. Steps:
1. start the mock broker process (examples/mock_broker.rs) preloaded with RECORDS profile updates
   over PARTITIONS partitions, and read back how many it really holds;
2. ROUNDS times, alternating: time `kcat -C -e -q -o beginning` reading the topic to /dev/null,
   then time freshwatch (JSON split on /tenant_id, JSON timestamp) reading all of it, under a fresh
   consumer group each time;
3. run freshwatch with the same topic as one tail-mode feed for TAIL_SECONDS and report its CPU
   seconds, next to the CPU seconds full consumption took.

freshwatch's time runs from its partition assignment (a consumer-group join, which kcat's simple
consumer does not do) to the moment its `/api/v1/source` says `records_consumed` reached the
count, polled every 10 ms. Its wall time from process start is reported too.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from harness import (cpu_seconds, free_port, metrics, source_status, start_freshwatch,
                     start_mock_broker, stop_mock_broker)

RECORDS = int(os.environ.get("RECORDS", "5000000"))
PARTITIONS = int(os.environ.get("PARTITIONS", "512"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
TAIL_SECONDS = float(os.environ.get("TAIL_SECONDS", "30"))


def freshwatch_config(brokers, topic, group, port, state_dir, tail):
    feed = (
        '[[feed]]\nname = "profiles-tail"\ntopic = "%s"\nmode = "tail"\n' % topic
        if tail
        else '[[feed]]\nname = "profiles"\ntopic = "%s"\nsplit_by = { json = "/tenant_id" }\n'
        'timestamp = { json = "/updated_at" }\nmax_keys = 100000\n' % topic
    )
    return f"""
[kafka]
brokers = "{brokers}"
group_id = "{group}"
start = "earliest"
tail_interval = "1s"
[state]
path = "{state_dir}"
[http]
listen = "127.0.0.1:{port}"
[evaluation]
interval = "1s"
[defaults]
warn_after = "1h"
critical_after = "6h"
{feed}"""


def time_kcat(brokers, topic):
    started = time.monotonic()
    subprocess.run(
        ["kcat", "-C", "-b", brokers, "-t", topic, "-e", "-q", "-o", "beginning"],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.monotonic() - started


def time_freshwatch(workdir, brokers, topic, held, round_index):
    port = free_port()
    state_dir = os.path.join(workdir, f"state-{round_index}")
    config = freshwatch_config(brokers, topic, f"bench-{round_index}-{time.time_ns()}", port,
                               state_dir, tail=False)
    started = time.monotonic()
    process = start_freshwatch(workdir, config, f"consume-{round_index}")
    assigned_at = None
    try:
        deadline = started + 600
        while time.monotonic() < deadline:
            status = source_status(port)
            now = time.monotonic()
            if status is not None:
                if assigned_at is None and status["assigned_partitions"] > 0:
                    assigned_at = now
                if status["records_consumed"] >= held:
                    cpu = cpu_seconds(process.pid)
                    series = sum(1 for name in metrics(port) or {}
                                 if name.startswith("freshwatch_feed_records_total{"))
                    return {
                        "from_assignment_s": now - (assigned_at or started),
                        "from_start_s": now - started,
                        "cpu_s": cpu,
                        "series": series,
                    }
            if process.poll() is not None:
                sys.exit(f"freshwatch exited early; see {workdir}/consume-{round_index}.log")
            time.sleep(0.01)
        sys.exit("freshwatch did not read every record within 600 s")
    finally:
        process.terminate()
        process.wait(timeout=60)


def tail_cpu(workdir, brokers, topic):
    port = free_port()
    config = freshwatch_config(brokers, topic, f"bench-tail-{time.time_ns()}", port,
                               os.path.join(workdir, "state-tail"), tail=True)
    process = start_freshwatch(workdir, config, "tail")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            values = metrics(port)
            if values and values.get('freshwatch_feed_last_seen_timestamp_seconds{feed="profiles-tail",key=""}'):
                break
            time.sleep(0.05)
        else:
            sys.exit(f"tail-mode feed never saw the topic; see {workdir}/tail.log")
        settled = cpu_seconds(process.pid)
        time.sleep(TAIL_SECONDS)
        return cpu_seconds(process.pid) - settled, cpu_seconds(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)


def main():
    workdir = tempfile.mkdtemp(prefix="freshwatch-e2e-")
    broker, brokers, topic, held = start_mock_broker(RECORDS, PARTITIONS)
    sample = subprocess.run(
        ["kcat", "-C", "-b", brokers, "-t", topic, "-p", "0", "-o", "beginning", "-c", "1", "-e",
         "-q"],
        capture_output=True, check=True,
    ).stdout
    payload_bytes = len(sample.rstrip(b"\n"))
    print(f"broker {brokers}: topic {topic}, {PARTITIONS} partitions, {held} records held "
          f"({held * payload_bytes / 1e9:.2f} GB of payload, {payload_bytes} B each)")

    kcat_times, freshwatch_runs = [], []
    for round_index in range(ROUNDS):
        kcat_s = time_kcat(brokers, topic)
        kcat_times.append(kcat_s)
        run = time_freshwatch(workdir, brokers, topic, held, round_index)
        freshwatch_runs.append(run)
        print(f"round {round_index + 1}: kcat {kcat_s:.2f}s ({held / kcat_s / 1e6:.2f} M rec/s); "
              f"freshwatch {run['from_assignment_s']:.2f}s from assignment "
              f"({held / run['from_assignment_s'] / 1e6:.2f} M rec/s), "
              f"{run['from_start_s']:.2f}s from start, {run['cpu_s']:.1f} CPU s, "
              f"{run['series']} series")
        sys.stdout.flush()

    kcat_median = statistics.median(kcat_times)
    freshwatch_median = statistics.median(run["from_assignment_s"] for run in freshwatch_runs)
    start_median = statistics.median(run["from_start_s"] for run in freshwatch_runs)
    consume_cpu = statistics.median(run["cpu_s"] for run in freshwatch_runs)
    tail_cpu_window, tail_cpu_total = tail_cpu(workdir, brokers, topic)
    summary = {
        "records": held,
        "partitions": PARTITIONS,
        "payload_bytes": payload_bytes,
        "kcat_median_s": round(kcat_median, 3),
        "kcat_records_per_s": round(held / kcat_median),
        "freshwatch_median_s": round(freshwatch_median, 3),
        "freshwatch_records_per_s": round(held / freshwatch_median),
        "freshwatch_from_start_median_s": round(start_median, 3),
        "ratio_vs_kcat": round(kcat_median / freshwatch_median, 3),
        "ratio_vs_kcat_from_start": round(kcat_median / start_median, 3),
        "consume_cpu_s": round(consume_cpu, 2),
        "tail_cpu_s_per_min": round(tail_cpu_window / TAIL_SECONDS * 60, 3),
        "tail_cpu_s_total": round(tail_cpu_total, 2),
    }
    print(json.dumps(summary, indent=2))
    stop_mock_broker(broker)


if __name__ == "__main__":
    main()
