#!/usr/bin/env python3
"""Warm-fire lateness: for a sample of conversations, actual fire time minus
the scheduled time, from the service's own history (dueAt, startedAt)."""
import json
import random
import sys
import urllib.request

server, conversations, sample = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
late = []
for i in random.sample(range(conversations), min(sample, conversations)):
    url = f"{server}/v1/conversations/lat-{i}/history?limit=20"
    with urllib.request.urlopen(url) as response:
        history = json.load(response)["history"]
    late += [h["startedAt"] - h["dueAt"] for h in history if h["trigger"] == "scheduled"]
if not late:
    sys.exit("no scheduled warms found: wait longer than one interval")
late.sort()
pick = lambda q: late[min(len(late) - 1, int(q * len(late)))]
print(f"warm-fire lateness over {len(late)} warms: p50 {pick(0.5)} ms, p99 {pick(0.99)} ms, max {late[-1]} ms")
