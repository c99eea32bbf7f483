#!/usr/bin/env python3
"""A million tenants: memory, scrape size and API latency of the real binary against a separate
broker (Tansu) and Redis. Started by bench/cardinality.sh, which builds the release binary.

Steps, for each key count in KEYS (default "5000 1000000"):
1. start Redis and Tansu (SQLite storage), create a topic of 4 partitions, produce that many
   records (examples/produce_keys.rs, librdkafka), each with its own key (the load time is reported);
2. start freshwatch with one feed, `split_by = "key"`, `max_keys = 2000000`, Redis as state;
   report RSS before any record;
3. wait until it has read every record and judged them (`freshwatch_feed_keys_by_status` for
   `ok` equals the key count); report the read time and RSS;
4. three `/metrics` scrapes (bytes, seconds, the aggregates present, per-key samples of the
   feed), then three `GET /api/v1/feeds?limit=10` (seconds), then one unlimited
   `GET /api/v1/feeds` (bytes, seconds); report RSS and VmHWM (peak RSS) after them.

RSS per series is the process's RSS after the reads divided by the keys (everything counted:
the table, Redis client buffers, allocator slack), and the same less the RSS before any record.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness import FRESHWATCH, free_port, source_status

TANSU = os.environ.get(
    "FRESHWATCH_TANSU", os.path.expanduser("~/.cache/freshwatch/tansu-0.6.0/bin/tansu")
)
PRODUCE_KEYS = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "examples",
                            "produce_keys")
KEYS = [int(keys) for keys in os.environ.get("KEYS", "5000 1000000").split()]
# THRESHOLDS=learned or learned_by_hour: the feed learns (every series keeps its cadence
# summary; by hour, its own hours of the day too); default fixed.
THRESHOLDS = os.environ.get("THRESHOLDS", "fixed")
LEARNING = {
    "fixed": "",
    "learned": 'thresholds = "learned"\n',
    "learned_by_hour": 'thresholds = "learned"\nlearn_by_hour = true\n',
}[THRESHOLDS]
PARTITIONS = 4


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
    return fields


def mb(value):
    return f"{value / 1e6:.1f} MB"


def get(port, path, timeout=120):
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
        body = reply.read()
    return body, time.monotonic() - started


def wait_port(port, what, seconds=30):
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def produce(brokers, topic, keys):
    started = time.monotonic()
    subprocess.run([PRODUCE_KEYS, brokers, topic, str(keys)], check=True)
    return time.monotonic() - started


def config(brokers, topic, redis_port, http_port):
    return f"""
[kafka]
brokers = "{brokers}"
group_id = "cardinality-{time.time_ns()}"
start = "earliest"
[state]
redis_url = "redis://127.0.0.1:{redis_port}/0"
[http]
listen = "127.0.0.1:{http_port}"
[evaluation]
interval = "1s"
[[feed]]
name = "tenants"
topic = "{topic}"
split_by = "key"
max_keys = 2000000
warn_after = "1h"
critical_after = "6h"
{LEARNING}"""


def ok_keys(port):
    try:
        body, _ = get(port, "/metrics")
    except OSError:
        return None
    prefix = 'freshwatch_feed_keys_by_status{feed="tenants",status="ok"} '
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            return int(float(line[len(prefix):]))
    return None


def run(keys):
    workdir = tempfile.mkdtemp(prefix="freshwatch-cardinality-")
    processes = []
    try:
        redis_port, broker_port, http_port = free_port(), free_port(), free_port()
        processes.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"tcp://127.0.0.1:{broker_port}"
        tansu_log = open(os.path.join(workdir, "tansu.log"), "w")
        processes.append(subprocess.Popen(
            [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "sqlite://tansu.db"],
            cwd=workdir, stdout=tansu_log, stderr=tansu_log, env=dict(os.environ, RUST_LOG="warn")))
        wait_port(redis_port, "redis")
        wait_port(broker_port, "tansu")
        brokers = f"127.0.0.1:{broker_port}"
        topic = "tenants"
        subprocess.run([TANSU, "topic", "create", "--broker", url, "--partitions",
                        str(PARTITIONS), topic], check=True, stdout=subprocess.DEVNULL)
        load_seconds = produce(brokers, topic, keys)
        print(f"[{keys} keys] loaded into Tansu in {load_seconds:.1f} s", flush=True)

        config_path = os.path.join(workdir, "freshwatch.toml")
        with open(config_path, "w") as config_file:
            config_file.write(config(brokers, topic, redis_port, http_port))
        log = open(os.path.join(workdir, "freshwatch.log"), "w")
        freshwatch = subprocess.Popen(
            [FRESHWATCH, "run", "--config", config_path], stdout=log, stderr=log,
            env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")))
        processes.append(freshwatch)
        started = time.monotonic()
        wait_port(http_port, "freshwatch")
        empty_rss = proc_status(freshwatch.pid)["VmRSS"]
        while True:
            source = source_status(http_port) or {}
            if source.get("records_consumed", 0) >= keys:
                break
            if freshwatch.poll() is not None:
                raise SystemExit(f"freshwatch exited: see {workdir}/freshwatch.log")
            time.sleep(0.2)
        read_seconds = time.monotonic() - started
        read_rss = proc_status(freshwatch.pid)["VmRSS"]
        # Judged: every key ok (each scrape here is one more read, as a Prometheus's would be).
        while ok_keys(http_port) != keys:
            time.sleep(1)
        print(f"[{keys} keys] read in {read_seconds:.1f} s; RSS empty {mb(empty_rss)}, "
              f"after the read {mb(read_rss)}", flush=True)

        for scrape in range(3):
            body, seconds = get(http_port, "/metrics")
            text = body.decode()
            per_key = sum(1 for line in text.splitlines()
                          if line.startswith('freshwatch_feed_status{feed="tenants",key='))
            aggregates = ('freshwatch_feed_keys_by_status{feed="tenants",status="ok"}' in text
                          and 'freshwatch_feed_max_staleness_seconds{feed="tenants"}' in text)
            print(f"[{keys} keys] /metrics {len(body) / 1e3:.1f} kB in {seconds:.3f} s; per-key "
                  f"freshwatch_feed_status samples {per_key}; both aggregates: {aggregates}",
                  flush=True)
        for call in range(3):
            body, seconds = get(http_port, "/api/v1/feeds?limit=10")
            print(f"[{keys} keys] /api/v1/feeds?limit=10: {len(json.loads(body))} rows in "
                  f"{seconds:.3f} s", flush=True)
        status = proc_status(freshwatch.pid)
        print(f"[{keys} keys] after 3 scrapes and 3 API calls: RSS {mb(status['VmRSS'])}, "
              f"VmHWM {mb(status['VmHWM'])}", flush=True)
        body, seconds = get(http_port, "/api/v1/feeds")
        rows = len(json.loads(body))
        status = proc_status(freshwatch.pid)
        print(f"[{keys} keys] unlimited /api/v1/feeds: {rows} rows, {mb(len(body))} in "
              f"{seconds:.2f} s; then RSS {mb(status['VmRSS'])}, VmHWM {mb(status['VmHWM'])}",
              flush=True)
        print(f"[{keys} keys] RSS per series: {status['VmRSS'] / keys:.0f} B "
              f"(less the empty process: {(status['VmRSS'] - empty_rss) / keys:.0f} B)",
              flush=True)
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if os.environ.get("KEEP") is None:
            subprocess.run(["rm", "-rf", workdir])
        else:
            print(f"kept {workdir}")


if __name__ == "__main__":
    for keys in KEYS:
        run(keys)
    sys.exit(0)
