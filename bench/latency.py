#!/usr/bin/env python3
"""Alert latency: from a threshold crossing to Alertmanager holding the alert.

Started by bench/latency.sh. A real Alertmanager, the mock broker process and freshwatch with one
feed split by key (`warn_after = WARN_SECONDS`, `evaluation.interval = INTERVAL`). Once freshwatch
has caught up, kcat produces one record per key whose JSON `ts` is spread over SPREAD_SECONDS,
so the keys cross `warn_after` at known instants (ts + warn_after), spread across the evaluation
phase. Alertmanager's own `GET /api/v2/alerts` is polled every 10 ms; an alert's latency is when
it first appears there minus its crossing instant. The figure is an upper bound: it includes up
to one poll period.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from harness import free_port, source_status, start_freshwatch, start_mock_broker, stop_mock_broker

KEYS = int(os.environ.get("KEYS", "300"))
INTERVAL = float(os.environ.get("INTERVAL", "1"))
WARN_SECONDS = 3
SPREAD_SECONDS = float(os.environ.get("SPREAD_SECONDS", "20"))


def start_alertmanager(workdir):
    port = free_port()
    config = os.path.join(workdir, "alertmanager.yml")
    with open(config, "w") as config_file:
        config_file.write("route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n")
    log = open(os.path.join(workdir, "alertmanager.log"), "w")
    process = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={config}",
         f"--storage.path={workdir}/alertmanager-data",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         "--log.level=warn"],
        stdout=log, stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.05)
    sys.exit(f"alertmanager not ready; see {workdir}/alertmanager.log")


def stale_alerts(alertmanager_url):
    """Keys of the FeedStale alerts Alertmanager holds now."""
    query = urllib.parse.quote('alertname="FeedStale"')
    with urllib.request.urlopen(f"{alertmanager_url}/api/v2/alerts?filter={query}",
                                timeout=2) as reply:
        return {alert["labels"].get("key") for alert in json.load(reply)}


def main():
    workdir = tempfile.mkdtemp(prefix="freshwatch-latency-")
    alertmanager, alertmanager_url = start_alertmanager(workdir)
    broker, brokers, _, _ = start_mock_broker(0, 4, "--topic", "latency")
    port = free_port()
    config = f"""
[kafka]
brokers = "{brokers}"
group_id = "latency-{time.time_ns()}"
[state]
path = "{workdir}/state"
[http]
listen = "127.0.0.1:{port}"
[evaluation]
interval = "{int(INTERVAL * 1000)}ms"
catchup_tolerance = 0
[[feed]]
name = "latency"
topic = "latency"
split_by = "key"
timestamp = {{ json = "/ts" }}
warn_after = "{WARN_SECONDS}s"
critical_after = "1h"
[[alerts.alertmanager]]
url = "{alertmanager_url}"
"""
    freshwatch = start_freshwatch(workdir, config, "freshwatch")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = source_status(port)
            if status and status["assigned_partitions"] > 0 and status["lag_records"] == 0:
                break
            time.sleep(0.05)
        else:
            sys.exit(f"freshwatch never caught up; see {workdir}/freshwatch.log")

        # Crossings start a little after the records are in, and spread over SPREAD_SECONDS.
        first_ms = int(time.time() * 1000) + 2000 - WARN_SECONDS * 1000
        crossings = {}
        lines = []
        for index in range(KEYS):
            ts_ms = first_ms + int(index * SPREAD_SECONDS * 1000 / KEYS)
            key = f"k{index:04d}"
            crossings[key] = (ts_ms + WARN_SECONDS * 1000) / 1000
            lines.append(f'{key}\t{{"ts":{ts_ms}}}')
        subprocess.run(["kcat", "-P", "-b", brokers, "-t", "latency", "-K", "\t"],
                       input="\n".join(lines) + "\n", text=True, check=True)

        seen = {}
        deadline = time.time() + SPREAD_SECONDS + WARN_SECONDS + 30
        while len(seen) < KEYS and time.time() < deadline:
            now = time.time()
            for key in stale_alerts(alertmanager_url) - seen.keys():
                seen[key] = now
            time.sleep(0.01)
        missing = KEYS - len(seen)
        if missing:
            sys.exit(f"{missing} alerts never reached Alertmanager; see {workdir}")
        latencies = sorted(seen[key] - crossings[key] for key in seen)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        summary = {
            "alerts": len(latencies),
            "evaluation_interval_s": INTERVAL,
            "p50_s": round(statistics.median(latencies), 3),
            "p99_s": round(p99, 3),
            "max_s": round(latencies[-1], 3),
            "min_s": round(latencies[0], 3),
            "p99_over_interval": round(p99 / INTERVAL, 3),
            "target_met": p99 <= 1.5 * INTERVAL,
        }
        print(json.dumps(summary, indent=2))
    finally:
        freshwatch.terminate()
        freshwatch.wait(timeout=60)
        alertmanager.terminate()
        stop_mock_broker(broker)


if __name__ == "__main__":
    main()
