#!/usr/bin/env python3
"""Warm lateness: for a sample of conversations, when the provider received
each scheduled warm minus when it was due. The due time is the service's
(history `dueAt`); the arrival is the stand-in's (`receivedAtMs`, the same
machine's wall clock), so the figure includes everything between the timer
and the wire: the concurrency permit, the template read back from the store,
building and sending the request.

Usage: lateness.py SERVER STANDIN CONVERSATIONS SAMPLE"""
import json
import os
import random
import sys
import time
import urllib.parse
import urllib.request

server, standin = sys.argv[1], sys.argv[2]
conversations, sample = int(sys.argv[3]), int(sys.argv[4])


def get(url):
    with urllib.request.urlopen(url) as response:
        return json.load(response)


# Only warms due before the measurement starts: its own queries load the
# stand-in, and would make the warms sent meanwhile late.
started_ms = int(time.time() * 1000)
late, fired = [], []
for i in random.sample(range(conversations), min(sample, conversations)):
    history = get(f"{server}/v1/conversations/lat-{i}/history?limit=20")["history"]
    # Every settle of lat-i carries "hi from lat-i" then a closing quote, or
    # a space when SYSTEM_KB adds its own words (bench/body.lua): that end
    # keeps lat-1 from matching lat-10.
    end = " " if os.environ.get("SYSTEM_KB") else '"'
    tag = urllib.parse.quote(f"hi from lat-{i}{end}")
    arrivals = sorted(
        r["receivedAtMs"]
        for r in get(f"{standin}/_standin/requests?bodies=false&contains={tag}")
        if (r.get("userAgent") or "").startswith("warming/")
    )
    for h in history:
        if h["trigger"] != "scheduled" or h["dueAt"] >= started_ms:
            continue
        fired.append(h["startedAt"] - h["dueAt"])
        # The warm's request arrived between its start and its answer.
        arrived = [a for a in arrivals if h["startedAt"] <= a <= h["finishedAt"]]
        if arrived:
            late.append(arrived[0] - h["dueAt"])
if not late:
    sys.exit("no scheduled warms found: wait longer than one interval")


def line(name, values):
    values.sort()
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return f"{name} over {len(values)} warms: p50 {pick(0.5)} ms, p99 {pick(0.99)} ms, max {values[-1]} ms"


print(line("warm lateness at the provider (received - due)", late))
print(line("timer lateness (fired - due, before the permit, the template read and the send)", fired))
