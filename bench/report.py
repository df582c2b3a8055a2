#!/usr/bin/python3
"""Summary of one bench/run: report.py OUT_DIR

Reads OUT_DIR/wrk.jsonl (one wrk measurement per line), OUT_DIR/ttft.jsonl
(one streamed request per line) and OUT_DIR/env.txt; prints a plain-text
summary and writes OUT_DIR/summary.md (the same figures as Markdown tables,
ready for docs/benchmarks.md).  Standard library only.

Statistics: every figure is the median over rounds of that round's value;
[a..b] is the range over rounds.  Comparisons (agpu vs nginx) are paired:
computed within each round, where both ran back to back under the same
machine load, then the median over rounds is taken.
"""
import json
import os
import statistics
import sys

TARGET_P50_EXCESS_US = 0.0  # agpu's added p50 at 1 connection <= nginx's
TARGET_RPS_RATIO = 0.8      # agpu req/s >= 0.8 x nginx's at 32 connections

NCPU = [os.cpu_count() or 1]  # replaced by env.txt's ncpu in main()

REQ_LABEL = {"get": "GET /api/version", "post": "POST /api/generate (stream:false)"}


def load(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    return rows


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    """Nearest-rank percentile."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p / 100.0 * len(s) // 1)) - 1))
    return s[k]


def rng(xs, fmt):
    if not xs:
        return ""
    return "[" + fmt % min(xs) + ".." + fmt % max(xs) + "]"


class Out:
    def __init__(self):
        self.txt = []
        self.md = []

    def t(self, s=""):
        self.txt.append(s)

    def m(self, s=""):
        self.md.append(s)


def wrk_section(rows, o):
    if not rows:
        o.t("wrk: no results")
        return {}
    configs = [c for c in ("direct", "nginx", "agpu") if any(r["config"] == c for r in rows)]
    reqs = [q for q in ("get", "post") if any(r["req"] == q for r in rows)]
    conns = sorted({r["conns"] for r in rows})
    rounds = sorted({r["round"] for r in rows})
    by = {}
    for r in rows:
        if r["requests"] == 0:  # nothing completed: its latency is unbounded, not 0
            for k in ("p50_us", "p90_us", "p99_us", "p999_us", "lat_max_us"):
                r[k] = float("inf")
        by[(r["req"], r["conns"], r["config"], r["round"])] = r
    errors = [r for r in rows if r["err_connect"] + r["err_read"] + r["err_write"] +
              r["err_status"] + r["err_timeout"] > 0]
    # A request slower than a second from a backend that answers in microseconds is a stall.
    stalls = [r for r in rows if r["lat_max_us"] >= 1e6 or r["requests"] < 100]
    verdicts = {}

    o.t("wrk: %d rounds; median over rounds [range over rounds]" % len(rounds))
    o.m("Medians over %d rounds; brackets give the range over rounds. CPU is user+system time "
        "of the proxy's processes (all threads) divided by requests served." % len(rounds))
    for req in reqs:
        o.t()
        o.t(REQ_LABEL[req])
        o.t("%5s %-7s %22s %24s %24s %13s %9s %11s" % (
            "conns", "config", "req/s", "p50 ms", "p99 ms", "proxy CPU/req", "ctxsw/req",
            "backend CPU"))
        o.m()
        o.m("**%s**" % REQ_LABEL[req])
        o.m()
        o.m("| conns | config | req/s | p50 ms | p99 ms | proxy CPU µs/req | proxy context "
            "switches/req | backend CPU µs/req |")
        o.m("|---:|---|---:|---:|---:|---:|---:|---:|")
        for c in conns:
            for cfg in configs:
                rs = [by[k] for k in ((req, c, cfg, n) for n in rounds) if k in by]
                if not rs:
                    continue
                rps = [r["rps"] for r in rs]
                p50 = [r["p50_us"] / 1000 for r in rs]
                p99 = [r["p99_us"] / 1000 for r in rs]
                cpu = [1e6 * r["proxy_cpu_s"] / r["requests"] for r in rs if r["requests"]]
                ctx = [r.get("proxy_ctxsw", 0) / r["requests"] for r in rs if r["requests"]]
                cpu_s = "%.1f us" % med(cpu) if cfg != "direct" else "-"
                ctx_s = "%.2f" % med(ctx) if cfg != "direct" else "-"
                back = [1e6 * r["backend_cpu_s"] / r["requests"] for r in rs if r["requests"]]
                o.t("%5d %-7s %8.0f %-13s %7.3f %-16s %7.3f %-16s %13s %9s %8.1f us" % (
                    c, cfg, med(rps), rng(rps, "%.0f"), med(p50), rng(p50, "%.3f"),
                    med(p99), rng(p99, "%.3f"), cpu_s, ctx_s, med(back)))
                o.m("| %d | %s | %.0f %s | %.3f %s | %.3f %s | %s | %s | %.1f |" % (
                    c, cfg, med(rps), rng(rps, "%.0f"), med(p50), rng(p50, "%.3f"),
                    med(p99), rng(p99, "%.3f"), "%.1f" % med(cpu) if cfg != "direct" else "–",
                    ctx_s if cfg != "direct" else "–", med(back)))

    if "agpu" not in configs or "nginx" not in configs:
        return verdicts

    # Paired comparisons and the targets.
    o.t()
    o.t("Targets (paired per round, then median over rounds):")
    o.m()
    o.m("| target | request | measured (median of rounds) | rounds meeting it | verdict |")
    o.m("|---|---|---|---:|---|")
    lo, hi = min(conns), max(conns)
    for req in reqs:
        # 1. added p50 at the lowest connection count
        ex, add_n, add_a = [], [], []
        for n in rounds:
            d, g, a = (by.get((req, lo, x, n)) for x in ("direct", "nginx", "agpu"))
            if g and a:
                ex.append(a["p50_us"] - g["p50_us"])
                if d:
                    add_n.append(g["p50_us"] - d["p50_us"])
                    add_a.append(a["p50_us"] - d["p50_us"])
        if ex:
            ok = med(ex) <= TARGET_P50_EXCESS_US
            good = sum(1 for e in ex if e <= TARGET_P50_EXCESS_US)
            verdicts[("p50", req)] = ok
            o.t("  %-4s c=%d  added p50 vs direct: nginx %+.1f us, agpu %+.1f us;"
                " agpu - nginx = %+.1f us %s  (%d/%d rounds <= 0)  -> %s" % (
                    req, lo, med(add_n), med(add_a), med(ex), rng(ex, "%+.0f"), good, len(ex),
                    "PASS" if ok else "FAIL"))
            o.m("| added p50 at %d conn: agpu ≤ nginx | %s | nginx +%.1f µs, agpu +%.1f µs "
                "(agpu − nginx %+.1f µs %s) | %d/%d | **%s** |" % (
                    lo, REQ_LABEL[req].split(" (")[0], med(add_n), med(add_a), med(ex),
                    rng(ex, "%+.0f"), good, len(ex), "PASS" if ok else "FAIL"))
        # 2. throughput ratio at the highest connection count
        ratio = []
        for n in rounds:
            g, a = by.get((req, hi, "nginx", n)), by.get((req, hi, "agpu", n))
            if g and a and g["rps"] > 0:
                ratio.append(a["rps"] / g["rps"])
        if ratio:
            ok = med(ratio) >= TARGET_RPS_RATIO
            good = sum(1 for x in ratio if x >= TARGET_RPS_RATIO)
            verdicts[("rps", req)] = ok
            o.t("  %-4s c=%d  req/s agpu/nginx = %.2f %s  (%d/%d rounds >= %.1f)  -> %s" % (
                req, hi, med(ratio), rng(ratio, "%.2f"), good, len(ratio), TARGET_RPS_RATIO,
                "PASS" if ok else "FAIL"))
            o.m("| req/s at %d conns: agpu ≥ %.1f× nginx | %s | %.2f× %s | %d/%d | **%s** |" % (
                hi, TARGET_RPS_RATIO, REQ_LABEL[req].split(" (")[0], med(ratio),
                rng(ratio, "%.2f"), good, len(ratio), "PASS" if ok else "FAIL"))

    # Other paired ratios worth seeing.
    o.t()
    o.t("Other paired ratios (agpu / nginx):")
    for req in reqs:
        for c in conns:
            p50r, p99r, cpur, rpsr = [], [], [], []
            for n in rounds:
                g, a = by.get((req, c, "nginx", n)), by.get((req, c, "agpu", n))
                if not (g and a):
                    continue
                p50r.append(a["p50_us"] / max(g["p50_us"], 1))
                p99r.append(a["p99_us"] / max(g["p99_us"], 1))
                rpsr.append(a["rps"] / g["rps"])
                if g["proxy_cpu_s"] > 0 and a["requests"] and g["requests"]:
                    cpur.append((a["proxy_cpu_s"] / a["requests"]) /
                                (g["proxy_cpu_s"] / g["requests"]))
            o.t("  %-4s c=%-3d req/s %.2fx  p50 %.2fx  p99 %.2fx  CPU/req %.2fx" % (
                req, c, med(rpsr), med(p50r), med(p99r), med(cpur)))

    # Where the CPU goes: at the higher connection count the machine is CPU-bound, so
    # req/s is about (CPUs) / (everybody's CPU per request).
    if all("client_cpu_s" in r for r in rows):
        o.t()
        o.t("CPU per request at %d connections, median of rounds, us: wrk + backend + proxy"
            " = all (-> the req/s %s CPUs allow)" % (conns[-1], NCPU[0]))
        o.m()
        o.m("CPU per request at %d connections (µs, median of rounds): wrk + backend + proxy "
            "= all, and the req/s that %s CPUs allow at that cost:" % (conns[-1], NCPU[0]))
        o.m()
        o.m("| request | conns | config | wrk | backend | proxy | all | CPUs / all |")
        o.m("|---|---:|---|---:|---:|---:|---:|---:|")
        for req in reqs:
            for c in conns[-1:]:  # at 1 connection latency, not CPU, bounds req/s
                for cfg in configs:
                    rs = [by[k] for k in ((req, c, cfg, n) for n in rounds) if k in by]
                    rs = [r for r in rs if r["requests"]]
                    if not rs:
                        continue
                    per = lambda key: med([1e6 * r[key] / r["requests"] for r in rs])
                    w, b, p_ = per("client_cpu_s"), per("backend_cpu_s"), per("proxy_cpu_s")
                    ceiling = NCPU[0] * 1e6 / (w + b + p_)
                    o.t("  %-4s c=%-3d %-6s %6.1f + %6.1f + %6.1f = %6.1f  (-> %6.0f req/s)" % (
                        req, c, cfg, w, b, p_, w + b + p_, ceiling))
                    o.m("| %s | %d | %s | %.1f | %.1f | %.1f | %.1f | %.0f |" % (
                        req.upper(), c, cfg, w, b, p_, w + b + p_, ceiling))

    busy = [r["sys_busy_s"] / max(r["sys_busy_s"] + r["sys_idle_s"], 1e-9) for r in rows]
    steal = [r["sys_steal_s"] for r in rows]
    # CPU used by other tenants: the machine's busy time minus ours (wrk, proxy, backend)
    others = [max(0.0, r["sys_busy_s"] - r.get("client_cpu_s", 0) - r["proxy_cpu_s"] -
                  r["backend_cpu_s"]) / max(r["sys_busy_s"] + r["sys_idle_s"], 1e-9)
              for r in rows if "client_cpu_s" in r]
    o.t()
    o.t("Machine: CPU busy during measurements median %.0f%% [%.0f..%.0f%%], steal %.2f s total"
        % (100 * med(busy), 100 * min(busy), 100 * max(busy), sum(steal)))
    if others:
        o.t("         of which other processes (not wrk, proxy, backend): median %.0f%% "
            "[%.0f..%.0f%%] of the machine" % (100 * med(others), 100 * min(others),
                                              100 * max(others)))
        o.m()
        o.m("During the measurements the machine was %.0f%% busy (median), %.0f%% of it with "
            "other people's work (range %.0f..%.0f%%)." % (
                100 * med(busy), 100 * med(others), 100 * min(others), 100 * max(others)))
    if stalls:
        o.t("WARNING: %d measurements had requests stalling (over 1 s, or fewer than 100 "
            "completed: the others never finished):" % len(stalls))
        o.m()
        o.m("**Stalls:** %d measurements had requests over 1 s or fewer than 100 requests "
            "completed: %s." % (len(stalls), ", ".join(sorted({"%s %s c=%d" % (
                r["config"], r["req"], r["conns"]) for r in stalls}))))
        for r in stalls[:12]:
            o.t("  round %d %s %s c=%d: %d requests in %.1f s, slowest %.3f s" % (
                r["round"], r["config"], r["req"], r["conns"], r["requests"],
                r["duration_us"] / 1e6, r["lat_max_us"] / 1e6))
    if errors:
        o.t("WARNING: %d measurements had socket errors or non-2xx answers:" % len(errors))
        for r in errors[:10]:
            o.t("  round %d %s %s c=%d: connect %d read %d write %d status %d timeout %d" % (
                r["round"], r["config"], r["req"], r["conns"], r["err_connect"], r["err_read"],
                r["err_write"], r["err_status"], r["err_timeout"]))
    return verdicts


def ttft_section(rows, o):
    if not rows:
        o.t("streaming: no results")
        return
    configs = [c for c in ("direct", "nginx", "agpu") if any(r["config"] == c for r in rows)]
    ok = [r for r in rows if r.get("status") == 200 and r.get("done") and r.get("ttft_ms")]
    bad = len(rows) - len(ok)
    tps = rows[0].get("tps", 0)
    expect = 1000.0 / tps if tps else float("nan")
    o.t("Streaming /api/generate from ollama-sim at %g tokens/s (one line every %.1f ms), "
        "%d requests per config" % (tps, expect, len(rows) // max(len(configs), 1)))
    if bad:
        for cfg in configs:
            f = [r for r in rows if r["config"] == cfg and r not in ok]
            if f:
                what = f[0].get("error") or "status %s, %s lines, done %s" % (
                    f[0].get("status"), f[0].get("lines"), f[0].get("done"))
                o.t("WARNING: %s: %d of its requests FAILED (first: %s); left out below" % (
                    cfg, len(f), what))
                o.m()
                o.m("**%s: %d streamed requests failed** (first: %s)." % (cfg, len(f), what))
        o.m()
    o.t("%-7s %9s %9s %9s %9s %10s %10s %9s %9s %8s" % (
        "config", "head p50", "TTFT p50", "TTFT p99", "TTFT max", "gap p50", "gap p99",
        "batched", "stalled", "total"))
    o.m("**Streamed `/api/generate` from ollama-sim at %g tokens/s** (a line every %.1f ms), "
        "%d requests per configuration; times from sending the request, in ms:" % (
            tps, expect, len(rows) // max(len(configs), 1)))
    o.m()
    o.m("| config | head p50 ms | TTFT p50 ms | TTFT p99 ms | gap p50 ms | gap p99 ms | "
        "batched gaps | stalled gaps | reply p50 ms |")
    o.m("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    by_rep = {}
    for cfg in configs:
        rs = [r for r in ok if r["config"] == cfg]
        if not rs:
            continue
        for r in rs:
            by_rep[(cfg, r["rep"])] = r
        tt = [r["ttft_ms"] for r in rs]
        hd = [r["ttfb_ms"] for r in rs]
        gaps = [g for r in rs for g in r["gaps_ms"]]
        tot = [r["total_ms"] for r in rs]
        batched = sum(1 for g in gaps if g < 0.25 * expect) / max(len(gaps), 1)
        stalled = sum(1 for g in gaps if g > 1.75 * expect) / max(len(gaps), 1)
        o.t("%-7s %9.3f %9.3f %9.3f %9.3f %10.3f %10.3f %8.1f%% %8.1f%% %8.1f" % (
            cfg, med(hd), med(tt), pct(tt, 99), max(tt), med(gaps), pct(gaps, 99),
            100 * batched, 100 * stalled, med(tot)))
        o.m("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f%% | %.1f%% | %.1f |" % (
            cfg, med(hd), med(tt), pct(tt, 99), med(gaps), pct(gaps, 99), 100 * batched,
            100 * stalled, med(tot)))
    o.t("(batched: gap < 25%% of %.1f ms, lines delivered together; stalled: gap > 175%%)" % expect)
    for cfg in configs:
        if cfg == "direct":
            continue
        d = [by_rep[(cfg, n)]["ttft_ms"] - by_rep[("direct", n)]["ttft_ms"]
             for (c, n) in list(by_rep) if c == cfg and ("direct", n) in by_rep]
        if d:
            o.t("  %s adds to TTFT (paired per repetition): median %+.3f ms, p90 %+.3f ms, "
                "max %+.3f ms" % (cfg, med(d), pct(d, 90), max(d)))
            o.m()
            o.m("%s adds to time to first token (paired per repetition): median %+.3f ms, "
                "p90 %+.3f ms, max %+.3f ms." % (cfg, med(d), pct(d, 90), max(d)))


def main():
    out_dir = sys.argv[1]
    env = {}
    if os.path.exists(os.path.join(out_dir, "env.txt")):
        with open(os.path.join(out_dir, "env.txt")) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                env[k] = v
    if env.get("ncpu", "").isdigit():
        NCPU[0] = int(env["ncpu"])
    o = Out()
    o.t("agpu benchmark, %s, %s, %s CPUs (%s), load %s -> %s" % (
        env.get("date_utc", "?"), env.get("cpu", "?"), env.get("ncpu", "?"), env.get("host", "?"),
        env.get("loadavg_start", "?"), env.get("loadavg_end", "?")))
    o.m("Run of %s on %s, %s CPUs, %s; %s rounds of %s s per wrk measurement, wrk %s threads "
        "above 1 connection; %s, nginx %s, agpu %s." % (
            env.get("date_utc", "?"), env.get("cpu", "?"), env.get("ncpu", "?"),
            env.get("host", "?"), env.get("rounds", "?"), env.get("duration_s", "?"),
            env.get("wrk_threads", "?"), env.get("wrk", "?"), env.get("nginx", "?"),
            env.get("agpu_rev", "?")))
    o.t()
    o.m()
    verdicts = wrk_section(load(os.path.join(out_dir, "wrk.jsonl")), o)
    o.t()
    o.m()
    ttft_section(load(os.path.join(out_dir, "ttft.jsonl")), o)
    if verdicts:
        o.t()
        o.t("TARGETS: %s" % ("all met" if all(verdicts.values()) else "NOT met: " + ", ".join(
            "%s %s" % k for k, v in verdicts.items() if not v)))
    print("\n".join(o.txt))
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(o.md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
