"""Shared pieces of the benchmark scripts: free ports, processes, freshwatch's HTTP API."""

import json
import os
import socket
import subprocess
import urllib.request

TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
# FRESHWATCH_BIN runs another build (say, the commit before a change) against the same broker.
FRESHWATCH = os.environ.get("FRESHWATCH_BIN", os.path.join(TARGET, "release", "freshwatch"))
MOCK_BROKER = os.path.join(TARGET, "release", "examples", "mock_broker")


def free_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def cpu_seconds(pid):
    """User plus system CPU seconds of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def source_status(port):
    """freshwatch's `/api/v1/source`: cheap to poll, it never locks the series table."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/source", timeout=2) as reply:
            return json.load(reply)
    except OSError:
        return None


def metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values


def start_freshwatch(workdir, config_text, name, binary=None):
    config_path = os.path.join(workdir, f"{name}.toml")
    with open(config_path, "w") as config_file:
        config_file.write(config_text)
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    return subprocess.Popen(
        [binary or FRESHWATCH, "run", "--config", config_path], stdout=log, stderr=log, env=env
    )


def start_mock_broker(records, partitions, *extra):
    """The mock-cluster broker process, preloaded; returns (process, brokers, topic, held)."""
    process = subprocess.Popen(
        [MOCK_BROKER, "--records", str(records), "--partitions", str(partitions), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    fields = dict(field.split("=", 1) for field in line.split())
    if "bootstrap" not in fields:
        raise SystemExit(f"mock broker did not start: {line!r}")
    return process, fields["bootstrap"], fields["topic"], int(fields["records"])


def stop_mock_broker(process):
    process.stdin.close()
    process.wait(timeout=60)
