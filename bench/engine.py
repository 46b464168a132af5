"""Time to first token of the next turn after an idle gap longer than the
engine's expiry, for each way warming keeps a prefix, against llama.cpp's
server (scripts/engine.py) on this CPU. Not a test: figures go to
bench/README.md.

    .venv/bin/python bench/engine.py [RUNS=3] [GAP_S=6] [slept|evicted]

The engine (1 slot, no host-memory prompt cache) sleeps after 3 s without a
request: it unloads the model and every cached prefix. For each prefix size
and run, a fresh conversation settles a turn through one of three warming
servers on the same engine, stays idle GAP_S seconds, then streams its next
turn; the time to its first chunk is measured:
- "hot": the same next turn sent at once after the first (the baseline, in
  the same run);
- "off": warming off (the engine slept: it reloads the model and computes the
  prefix again);
- "replay": warming on, every second, plain replays (`serve` without
  `--engine`): each warm keeps the engine awake and the prefix resident;
- "check": `--engine llama.cpp`: each warm asks the engine first and sends no
  replay while the prefix is resident (a check also keeps it awake);
- "restored": `--engine llama.cpp --engine-save-dir`: the prefix is saved
  once, nothing is sent during the gap, the engine sleeps, and the next turn
  is forwarded after the saved prefix is restored (the engine reloads the
  model first: the wake itself is in this figure).
With `evicted`, the engine never sleeps; instead, 2 s into the gap, another
conversation's turn (sent straight to the engine) takes the one slot, as a
shared engine's other users do: the prefix is gone, but the model stays
loaded, so "restored" is the restore alone.
"engine s / idle hour" is what each plan costs the engine while the user is
away at a 45 s interval (80 warms an hour, the README's example for an engine
expiring after 60 s): the mean time of the warms of a gap (their latency, from
history) times 80, or the one save of a gap.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
GAP_S = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
SCENARIO = sys.argv[3] if len(sys.argv) > 3 else "slept"
SIZES = [1000, 4000, 8000]  # prefix tokens, roughly (4 characters a token)
WARMS_PER_IDLE_HOUR = 80  # a 45 s interval


def start(cmd, marker):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if marker in line:
            return proc, line
    raise SystemExit(f"{cmd[0]} did not start")


def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def serve(port, engine_url, extra):
    db = f"/tmp/warming-engine-bench-{os.getpid()}-{port}.db"
    proc = subprocess.Popen(
        [os.path.join(ROOT, "target/release/warming"), "serve", "--listen", f"127.0.0.1:{port}",
         "--db", db, "--provider", "openai", "--openai-upstream", engine_url,
         "--upstream", engine_url, "--min-interval-ms", "1000", "--warm-timeout-ms", "120000",
         *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            call(base, "GET", "/healthz")
            return proc, base
        except Exception:
            time.sleep(0.1)
    raise SystemExit("warming did not start")


def turn(client, conversation, system, user, warming):
    headers = {"x-conversation-id": conversation}
    if warming:
        headers.update({"x-warming": "on", "x-warming-interval": "1"})
    start_t = time.perf_counter()
    stream = client.chat.completions.create(
        model="gemma-3-270m", max_tokens=4, temperature=0, stream=True, extra_headers=headers,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}])
    first = None
    for _ in stream:
        if first is None:
            first = time.perf_counter() - start_t
    return first


def asleep(engine_url):
    return call(engine_url, "GET", "/props").get("is_sleeping") is True


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def gap_warms(base, conversation):
    history = call(base, "GET", f"/v1/conversations/{conversation}/history?limit=100")
    return [e for e in history["history"] if e["trigger"] == "scheduled"]


def main():
    saves = tempfile.mkdtemp(prefix="warming-bench-slots-")
    sleep = ["--sleep-idle-seconds", "3"] if SCENARIO == "slept" else []
    engine, line = start([sys.executable, os.path.join(ROOT, "scripts/engine.py"), *sleep,
                          "--cache-ram-mib", "0", "--slot-save-path", saves], "listening on")
    engine_url = line.split("listening on ", 1)[1].strip()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "warming-cli"], cwd=ROOT, check=True)
    servers = {
        "replay": serve(18650, engine_url, []),
        "check": serve(18651, engine_url, ["--engine", "llama.cpp"]),
        "restored": serve(18652, engine_url, ["--engine", "llama.cpp", "--engine-save-dir", saves]),
    }
    clients = {mode: openai.OpenAI(base_url=base + "/proxy/openai/v1", api_key="local",
                                   max_retries=0, timeout=600)
               for mode, (_, base) in servers.items()}
    clients["off"] = clients["replay"]
    direct = openai.OpenAI(base_url=engine_url + "/v1", api_key="local", max_retries=0, timeout=600)
    try:
        expiry = ("sleeps after 3 s idle" if SCENARIO == "slept"
                  else "never sleeps; another conversation takes the slot 2 s into the gap")
        print(f"engine: llama.cpp (xllamacpp), Gemma 3 270M Q4_K_M, 1 slot, no RAM cache, "
              f"{expiry}; gap {GAP_S} s; {RUNS} runs each")
        print("| prefix | hot p50 | off p50 | replay p50 | check p50 | restored p50 | restored / hot "
              "| engine s / idle hour: replay | check | save |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for size in SIZES:
            first = {m: [] for m in ("hot", "off", "replay", "check", "restored")}
            per_warm = {m: [] for m in ("replay", "check")}
            saves_s = []
            for run in range(RUNS):
                for mode in ("off", "replay", "check", "restored"):
                    client = clients[mode]
                    base = servers["replay" if mode == "off" else mode][1]
                    conversation = f"b{size}-{mode}-{run}"
                    # Distinct from its first character on: no run reuses another's cache.
                    system = f"[{conversation}] " + "Answer briefly, plainly and with care. " * (size // 9)
                    warming = mode != "off"
                    turn(client, conversation, system, "Hello.", warming)
                    if mode == "off":
                        first["hot"].append(turn(client, conversation, system, "And then?", False))
                    if SCENARIO == "slept":
                        time.sleep(GAP_S)
                        if mode in ("off", "restored"):
                            # Past the engine's expiry: it must have slept.
                            while not asleep(engine_url):
                                time.sleep(0.2)
                    else:
                        time.sleep(2)
                        turn(direct, f"other-{conversation}", f"[other {conversation}] Be brief.",
                             "Hello.", False)
                        time.sleep(max(0.0, GAP_S - 2))
                    first[mode].append(turn(client, conversation, system, "And then?", warming))
                    warms = gap_warms(base, conversation) if warming else []
                    if mode in per_warm:
                        per_warm[mode] += [w["latencyMs"] / 1000 for w in warms]
                    if mode == "restored":
                        saves_s += [w["latencyMs"] / 1000 for w in warms if w["outcome"] == "saved"]
                    call(base, "POST", f"/v1/conversations/{conversation}/close", {})
            row = [f"{size}"]
            for mode in ("hot", "off", "replay", "check", "restored"):
                row.append(f"{1000 * pct(first[mode], 50):.0f} ms")
            row.append(f"{pct(first['restored'], 50) / pct(first['hot'], 50):.1f}x")
            for mode in ("replay", "check"):
                mean = statistics.mean(per_warm[mode]) if per_warm[mode] else 0.0
                row.append(f"{mean * WARMS_PER_IDLE_HOUR:.2f}")
            row.append(f"{statistics.mean(saves_s):.2f}" if saves_s else "-")
            print("| " + " | ".join(row) + " |", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        engine.terminate()


if __name__ == "__main__":
    main()
