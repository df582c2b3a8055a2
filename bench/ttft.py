#!/usr/bin/python3
"""Time to first token of a streamed /api/generate, per configuration.

    ttft.py --config direct=http://127.0.0.1:P --config agpu=http://127.0.0.1:Q \
            --n 30 --model bench --tokens 16 --tps 50 --out ttft.jsonl

For each repetition, one request per configuration, in an order that rotates
from one repetition to the next (so drift in the machine's load hits every
configuration alike).  Each configuration keeps one keep-alive connection, as
an SDK client would; a dropped connection is reopened and counted.

Per request it records, in milliseconds from just before the request is sent:
  ttfb  - the response head has arrived,
  ttft  - the first NDJSON line is complete (the first token),
  total - the last line (done:true) is complete,
and the gaps between consecutive token lines (done:false).  One JSON object
per request goes to --out; bench/report.py makes the statistics.  Standard
library only.
"""
import argparse
import http.client
import json
import socket
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", action="append", required=True, help="NAME=BASE_URL")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--model", default="bench")
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--tps", type=float, default=50)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    configs = []
    for c in a.config:
        name, url = c.split("=", 1)
        u = urllib.parse.urlsplit(url)
        configs.append((name, u.hostname, u.port))

    body = json.dumps({
        "model": a.model,
        "prompt": "Why is the sky blue?",
        "stream": True,
        "options": {"num_predict": a.tokens, "seed": 1, "temperature": 0},
    }).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson",
               "User-Agent": "agpu-bench/ttft"}
    conns = {}
    reconnects = {name: 0 for name, _, _ in configs}

    def one(name, host, port):
        conn = conns.get(name)
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
            conns[name] = conn
            reconnects[name] += 1
            conn.connect()
            # Nagle off on the client, as Go's and Python SDK clients have it.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter_ns()
        try:
            conn.request("POST", "/api/generate", body=body, headers=headers)
            resp = conn.getresponse()
            t_head = time.perf_counter_ns()
            stamps = []  # arrival of each token line (done:false)
            t_end = None  # arrival of the final done:true line
            last = b""
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.strip():
                    now = time.perf_counter_ns()
                    if b'"done":true' in line.replace(b" ", b""):
                        t_end = now
                    else:
                        stamps.append(now)
                    last = line
            status = resp.status
            will_close = resp.will_close
            resp.close()
        except Exception:
            conn.close()
            conns.pop(name, None)
            raise
        if will_close:
            conn.close()
            conns.pop(name, None)
        done = False
        try:
            done = bool(json.loads(last).get("done"))
        except ValueError:
            pass
        ms = lambda t: (t - t0) / 1e6
        return {
            "config": name,
            "status": status,
            "lines": len(stamps),
            "done": done,
            "ttfb_ms": round(ms(t_head), 4),
            "ttft_ms": round(ms(stamps[0]), 4) if stamps else None,
            "total_ms": round(ms(t_end), 4) if t_end else None,
            # between token lines only: the done line follows the last token at once
            "gaps_ms": [round((b - a_) / 1e6, 4) for a_, b in zip(stamps, stamps[1:])],
        }

    failures = 0
    with open(a.out, "a") as out:
        for rep in range(-a.warmup, a.n):
            k = rep % len(configs)
            for name, host, port in configs[k:] + configs[:k]:
                try:
                    r = one(name, host, port)
                except Exception as e:  # a failure is a result too, but stop if it persists
                    failures += 1
                    r = {"config": name, "error": repr(e)}
                    if failures > 5:
                        print("ttft: too many failures, last: %r" % e, file=sys.stderr)
                        return 1
                if rep < 0:
                    continue
                r["rep"] = rep
                r["tps"] = a.tps
                out.write(json.dumps(r) + "\n")
                if r.get("status") != 200 or not r.get("done"):
                    print("ttft: %s: bad answer %s" % (name, {k_: r.get(k_) for k_ in
                          ("status", "lines", "done", "error")}), file=sys.stderr)
                time.sleep(0.02)
    for name in reconnects:
        if reconnects[name] > 1:
            print("ttft: %s: connection reopened %d times" % (name, reconnects[name] - 1),
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
