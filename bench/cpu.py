#!/usr/bin/env python3
"""CPU per record, side by side: freshwatch against kcat reading the same topic in the same run.

Started by bench/cpu.sh (which builds the release binaries). One mock broker process
(examples/mock_broker.rs) is loaded once; then ROUNDS times, alternating:
- `kcat -C -e -q -o beginning` reads the whole topic to /dev/null; its user+sys CPU seconds come
  from wait4() (every thread, start to exit);
- freshwatch reads it with one feed split on `{ json = "/tenant_id" }`, timestamp
  `{ json = "/updated_at" }`, under a fresh consumer group. Its user+sys CPU seconds are read from
  /proc when `/api/v1/source` first reports every record consumed (polled every 10 ms), both for
  the whole process life (start-up and group join included) and from the partition assignment on.

Prints every round and the median ratio freshwatch CPU / kcat CPU, per record. Wall times are
printed too, but the figure is CPU: two cores shared with the broker make wall time noisy.
Environment: RECORDS (5000000), PARTITIONS (512), ROUNDS (5), FRESHWATCH_BIN (another build),
FRESHWATCH_BINS (`label=path,label=path`: several builds, each read once per round after kcat, so
a change is measured against the build before it on the same broker), KAFKA_PROPERTIES (extra
`key = "value"` lines for [kafka.properties]).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from harness import (FRESHWATCH, cpu_seconds, free_port, source_status, start_freshwatch, start_mock_broker,
                     stop_mock_broker)

RECORDS = int(os.environ.get("RECORDS", "5000000"))
PARTITIONS = int(os.environ.get("PARTITIONS", "512"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
KAFKA_PROPERTIES = os.environ.get("KAFKA_PROPERTIES", "")
BINARIES = [tuple(item.split("=", 1)) for item in
            os.environ.get("FRESHWATCH_BINS", f"freshwatch={FRESHWATCH}").split(",")]


def freshwatch_config(brokers, topic, group, port, state_dir):
    properties = f"[kafka.properties]\n{KAFKA_PROPERTIES}\n" if KAFKA_PROPERTIES else ""
    return f"""
[kafka]
brokers = "{brokers}"
group_id = "{group}"
start = "earliest"
{properties}
[state]
path = "{state_dir}"
[http]
listen = "127.0.0.1:{port}"
[evaluation]
interval = "1s"
[defaults]
warn_after = "1h"
critical_after = "6h"
[[feed]]
name = "profiles"
topic = "{topic}"
split_by = {{ json = "/tenant_id" }}
timestamp = {{ json = "/updated_at" }}
max_keys = 100000
"""


def run_kcat(brokers, topic):
    started = time.monotonic()
    process = subprocess.Popen(
        ["kcat", "-C", "-b", brokers, "-t", topic, "-e", "-q", "-o", "beginning"],
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"kcat failed with {process.returncode}")
    return {"wall_s": time.monotonic() - started, "cpu_s": usage.ru_utime + usage.ru_stime}


def run_freshwatch(workdir, brokers, topic, held, round_index, binary):
    port = free_port()
    config = freshwatch_config(brokers, topic, f"cpu-{round_index}-{time.time_ns()}", port,
                               os.path.join(workdir, f"state-{round_index}"))
    started = time.monotonic()
    process = start_freshwatch(workdir, config, f"cpu-{round_index}", binary)
    assigned_at, cpu_at_assignment = None, None
    try:
        deadline = started + 600
        while time.monotonic() < deadline:
            status = source_status(port)
            now = time.monotonic()
            if status is not None:
                if assigned_at is None and status["assigned_partitions"] > 0:
                    assigned_at, cpu_at_assignment = now, cpu_seconds(process.pid)
                if status["records_consumed"] >= held:
                    cpu = cpu_seconds(process.pid)
                    with open(f"/proc/{process.pid}/status") as proc_status:
                        memory = {line.split(":")[0]: int(line.split()[1]) // 1024
                                  for line in proc_status if line.startswith(("VmRSS", "VmHWM"))}
                    return {
                        "rss_mb": memory.get("VmRSS"),
                        "hwm_mb": memory.get("VmHWM"),
                        "wall_s": now - (assigned_at or started),
                        "cpu_s": cpu,
                        "cpu_from_assignment_s": cpu - (cpu_at_assignment or 0.0),
                    }
            if process.poll() is not None:
                sys.exit(f"freshwatch exited early; see {workdir}/cpu-{round_index}.log")
            time.sleep(0.01)
        sys.exit("freshwatch did not read every record within 600 s")
    finally:
        process.terminate()
        process.wait(timeout=60)


def main():
    workdir = tempfile.mkdtemp(prefix="freshwatch-cpu-")
    broker, brokers, topic, held = start_mock_broker(RECORDS, PARTITIONS)
    sample = subprocess.run(
        ["kcat", "-C", "-b", brokers, "-t", topic, "-p", "0", "-o", "beginning", "-c", "1", "-e",
         "-q"],
        capture_output=True, check=True,
    ).stdout
    payload_bytes = len(sample.rstrip(b"\n"))
    print(f"broker {brokers}: topic {topic}, {PARTITIONS} partitions, {held} records held, "
          f"{payload_bytes} B each")
    per_million = 1e6 / held
    rounds = {label: [] for label, _ in BINARIES}
    for round_index in range(ROUNDS):
        kcat = run_kcat(brokers, topic)
        print(f"round {round_index + 1}: kcat {kcat['cpu_s'] * per_million:.3f} CPU s/M "
              f"({kcat['wall_s']:.2f} s wall)")
        for label, binary in BINARIES:
            freshwatch = run_freshwatch(workdir, brokers, topic, held, round_index, binary)
            ratio = freshwatch["cpu_s"] / kcat["cpu_s"]
            ratio_from_assignment = freshwatch["cpu_from_assignment_s"] / kcat["cpu_s"]
            rounds[label].append((ratio, ratio_from_assignment, kcat, freshwatch))
            print(f"  {label}: {freshwatch['cpu_s'] * per_million:.3f} CPU s/M whole process, "
                  f"{freshwatch['cpu_from_assignment_s'] * per_million:.3f} from assignment "
                  f"({freshwatch['wall_s']:.2f} s wall from assignment); ratio to kcat "
                  f"{ratio:.3f} ({ratio_from_assignment:.3f} from assignment); "
                  f"RSS {freshwatch['rss_mb']} MB, peak {freshwatch['hwm_mb']} MB")
            sys.stdout.flush()
    summary = {"records": held, "payload_bytes": payload_bytes, "rounds": ROUNDS}
    for label, results in rounds.items():
        summary[label] = {
            "kcat_cpu_s_per_m_median": round(
                statistics.median(r[2]["cpu_s"] for r in results) * per_million, 3),
            "freshwatch_cpu_s_per_m_median": round(
                statistics.median(r[3]["cpu_s"] for r in results) * per_million, 3),
            "ratio_median": round(statistics.median(r[0] for r in results), 3),
            "ratio_from_assignment_median": round(statistics.median(r[1] for r in results), 3),
        }
    print(json.dumps(summary, indent=2))
    stop_mock_broker(broker)


if __name__ == "__main__":
    main()
