#!/usr/bin/env python3
"""Process start to ready: spawn the server, poll GET /v2/health/ready in a tight loop
(no sleeps; each refused connect returns at once), stop at the first 200. Prints one line
per run and a summary. Usage: start_to_ready.py BINARY PORT RUNS [server args...]"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

binary, port, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
extra = sys.argv[4:]
request = b"GET /v2/health/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def ready_once():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(request)
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


times = []
for _ in range(runs):
    env = dict(os.environ, RUST_LOG="warn")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = t0 + 10
    while not ready_once():
        if time.perf_counter() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit(f"server did not become ready (exit code {proc.poll()})")
    ms = (time.perf_counter() - t0) * 1e3
    times.append(ms)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)

times.sort()
print("start-to-ready ms: " + " ".join(f"{t:.1f}" for t in times))
print(
    f"start_to_ready_ms median={statistics.median(times):.1f} "
    f"min={times[0]:.1f} max={times[-1]:.1f} runs={len(times)}"
)
