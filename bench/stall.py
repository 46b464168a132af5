#!/usr/bin/env python3
"""One slow database call must not slow every conversation: lifecycle calls
from many clients, measured twice in the same run, first as a baseline and
then while one never-seen conversation's claim is stuck behind a row lock
another session holds in PostgreSQL.

Usage: stall.py SERVER DB_URL [SECONDS=10] [CLIENTS=16] [KNOWN=500]"""
import json
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

server, db = sys.argv[1], sys.argv[2]
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
clients = int(sys.argv[4]) if len(sys.argv) > 4 else 16
known = int(sys.argv[5]) if len(sys.argv) > 5 else 500


def call(path, body=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(
        server + path, data=data, method="POST",
        headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def request_of(tag):
    return {"model": "claude-sonnet-4-5", "max_tokens": 16,
            "system": [{"type": "text", "text": f"stall bench {tag} " * 40,
                        "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}]}


for i in range(known):
    call(f"/v1/conversations/known-{i}/turn-settled", {"request": request_of(i)})


def measure(phase):
    """Latencies (s) of a turn-started + turn-settled pair on a known
    conversation (CLIENTS clients), and of a turn-started on a never-seen
    one (4 more), for `seconds`."""
    stop = time.time() + seconds
    known_lat, new_lat = [], []
    lock = threading.Lock()

    def newcomer(n):
        k = 0
        while time.time() < stop:
            k += 1
            started = time.perf_counter()
            call(f"/v1/conversations/new-{phase}-{n}-{k}/turn-started")
            with lock:
                new_lat.append(time.perf_counter() - started)

    def worker(n):
        while time.time() < stop:
            i = random.randrange(known)
            started = time.perf_counter()
            call(f"/v1/conversations/known-{i}/turn-started")
            call(f"/v1/conversations/known-{i}/turn-settled", {"request": request_of(i)})
            with lock:
                known_lat.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    threads += [threading.Thread(target=newcomer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return known_lat, new_lat


def p(values, q):
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


baseline = measure("base")
# Another session inserts the owner row of a conversation and sits in its
# transaction: this instance's claim of that conversation waits on the row.
holder = subprocess.Popen(
    ["psql", "-q", db, "-c",
     "BEGIN; INSERT INTO owners (conversation, owner) VALUES ('stalled', 'elsewhere'); "
     f"SELECT pg_sleep({seconds + 5}); ROLLBACK;"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(0.5)
stuck = threading.Thread(
    target=lambda: call("/v1/conversations/stalled/turn-started", timeout=seconds + 30))
stuck.start()
time.sleep(0.5)
stalled = measure("stall")
holder.wait()
stuck.join()

for name, (k, n) in (("baseline", baseline), ("one claim stalled", stalled)):
    print(f"{name:18} known p50 {p(k, 50) * 1000:7.1f} ms p99 {p(k, 99) * 1000:7.1f} ms "
          f"({len(k)} pairs); never-seen p50 {p(n, 50) * 1000:7.1f} ms "
          f"p99 {p(n, 99) * 1000:7.1f} ms ({len(n)} calls)")
print(f"known p99 ratio stalled/baseline: {p(stalled[0], 99) / p(baseline[0], 99):.2f}; "
      f"never-seen p99 ratio: {p(stalled[1], 99) / p(baseline[1], 99):.2f}")
