#!/usr/bin/env python3
"""Added latency of proxy mode: the same requests straight to the stand-in and
through `warming serve`'s proxy, interleaved in one run, one keep-alive
connection each. Reports p50/p99 of the full non-streamed answer and of the
streamed answer's first byte, and the proxy's addition at each."""
import http.client
import json
import sys
import time
from urllib.parse import urlparse

standin, warming, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


def connection(url):
    u = urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port)


def body(stream):
    return json.dumps({
        "model": "claude-bench", "max_tokens": 16, "stream": stream,
        "system": [{"type": "text", "text": "You are a benchmark. " * 200, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello"}],
    })


def timed(conn, path, payload, first_byte):
    start = time.perf_counter()
    conn.request("POST", path, payload, {"content-type": "application/json", "x-conversation-id": "bench-proxy"})
    response = response_start = conn.getresponse()
    response.read(1)
    first = time.perf_counter() - start
    response.read()
    total = time.perf_counter() - start
    return first if first_byte else total


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


for stream in (False, True):
    direct_conn, proxy_conn = connection(standin), connection(warming)
    payload = body(stream)
    direct, proxied = [], []
    for _ in range(50):  # warm-up
        timed(direct_conn, "/v1/messages", payload, stream)
        timed(proxy_conn, "/proxy/anthropic/v1/messages", payload, stream)
    for _ in range(n):
        direct.append(timed(direct_conn, "/v1/messages", payload, stream))
        proxied.append(timed(proxy_conn, "/proxy/anthropic/v1/messages", payload, stream))
    what = "streamed, time to first byte" if stream else "non-streamed, whole answer"
    for q in (0.5, 0.99):
        d, p = pct(direct, q), pct(proxied, q)
        print(f"{what:30} p{int(q * 100):<2}: direct {d:.3f} ms, proxied {p:.3f} ms, added {p - d:+.3f} ms")
