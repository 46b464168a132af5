"""Time to first token of the next turn after an idle gap longer than the
engine's expiry, warming off vs on, against llama.cpp's server
(scripts/engine.py) on this CPU. Not a test: figures go to bench/README.md.

    .venv/bin/python bench/engine.py [RUNS=20] [GAP_S=5]

For each prefix size: a fresh conversation settles a turn through warming's
proxy, stays idle GAP_S seconds (the engine forgets prefixes after 3 s of
idleness), then sends its next turn, streamed; the time to its first chunk is
measured. "hot" is the same next turn sent at once after the first, with the
cache still hot (the baseline in the same run): llama.cpp re-evaluates a prompt
from the last point it can roll its cache back to (Gemma 3's sliding-window
layers keep checkpoints), so a new last user turn costs more than repeating
the previous prompt verbatim, hot or warmed alike. The warms' own cost is the
engine time they took (their latency).
"""
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

import openai

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
GAP_S = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
SIZES = [1000, 4000, 8000]  # prefix tokens, roughly (4 characters a token)


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


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    engine, _ = start([sys.executable, os.path.join(ROOT, "scripts/engine.py"),
                       "--sleep-idle-seconds", "3"], "listening on")
    engine_url = _.split("listening on ", 1)[1].strip()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "warming-cli"], cwd=ROOT, check=True)
    db = f"/tmp/warming-engine-bench-{os.getpid()}.db"
    warming = subprocess.Popen(
        [os.path.join(ROOT, "target/release/warming"), "serve", "--listen", "127.0.0.1:18650",
         "--db", db, "--provider", "openai", "--openai-upstream", engine_url,
         "--upstream", engine_url, "--min-interval-ms", "1000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = "http://127.0.0.1:18650"
    for _ in range(100):
        try:
            call(base, "GET", "/healthz")
            break
        except Exception:
            time.sleep(0.1)
    client = openai.OpenAI(base_url=base + "/proxy/openai/v1", api_key="local", max_retries=0,
                           timeout=600)
    try:
        print(f"engine: llama.cpp (xllamacpp), Gemma 3 270M Q4_K_M, 1 slot, idle expiry 3 s; "
              f"gap {GAP_S} s; {RUNS} runs each")
        print("| prefix | hot p50 / p99 | warming off p50 / p99 | warming on p50 / p99 | on/hot p50 | warm engine s per gap |")
        print("|---|---|---|---|---|---|")
        for size in SIZES:
            results = {"hot": [], "off": [], "on": []}
            warm_seconds = []
            for run in range(RUNS):
                for mode in ("off", "on"):
                    conversation = f"b{size}-{mode}-{run}"
                    # Distinct from its first character on: no run reuses another's cache.
                    system = f"[{conversation}] " + "Answer briefly, plainly and with care. " * (size // 9)
                    turn(client, conversation, system, "Hello.", mode == "on")
                    if mode == "off":
                        results["hot"].append(turn(client, conversation, system, "And then?", False))
                    time.sleep(GAP_S)
                    results[mode].append(turn(client, conversation, system, "And then?", mode == "on"))
                    if mode == "on":
                        history = call(base, "GET", f"/v1/conversations/{conversation}/history?limit=100")
                        warm_seconds.append(sum(e["latencyMs"] for e in history["history"]
                                                if e["trigger"] == "scheduled") / 1000)
                    call(base, "POST", f"/v1/conversations/{conversation}/close", {})
            row = [f"{size}"]
            for mode in ("hot", "off", "on"):
                row.append(f"{1000 * pct(results[mode], 50):.0f} / {1000 * pct(results[mode], 99):.0f} ms")
            row.append(f"{pct(results['on'], 50) / pct(results['hot'], 50):.1f}x")
            row.append(f"{statistics.mean(warm_seconds):.2f}")
            print("| " + " | ".join(row) + " |", flush=True)
    finally:
        warming.terminate()
        engine.terminate()


if __name__ == "__main__":
    main()
