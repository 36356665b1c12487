#!/usr/bin/env python3
"""Turn bench/run's raw samples into its tables.

    report.py --samples FILE --deny FILE [--systems "direct moat squid nginx haproxy"]

FILE (samples): tab-separated lines "round system metric value".  FILE (deny): lines
"system proto deny=yes|no allow=1|0".  Prints three tables: every figure as the median
over the rounds (min-max); the ratio of each system to direct and of moat to each peer
(ratios of medians); and the aims, each with the measured value and "met" or "NOT met".
"""
import argparse
import statistics
import sys

METRICS = [
    # key, label, unit, higher is better
    ("tput_https", "throughput TLS, 1 stream", "MB/s", True),
    ("tput_http", "throughput HTTP, 1 stream", "MB/s", True),
    ("cpugib_https", "proxy CPU per GiB, TLS", "s", False),
    ("cpugib_http", "proxy CPU per GiB, HTTP", "s", False),
    ("cps_https", "new conns/s TLS (wrk close)", "1/s", True),
    ("cps_http", "new conns/s HTTP (wrk close)", "1/s", True),
    ("cpuconn_https", "proxy CPU per new conn, TLS", "us", False),
    ("cpuconn_http", "proxy CPU per new conn, HTTP", "us", False),
    ("rps_https", "keep-alive req/s TLS (c16)", "1/s", True),
    ("rps_http", "keep-alive req/s HTTP (c16)", "1/s", True),
    ("lat50_https", "latency p50 TLS (c1)", "us", False),
    ("lat99_https", "latency p99 TLS (c1)", "us", False),
    ("lat50_http", "latency p50 HTTP (c1)", "us", False),
    ("lat99_http", "latency p99 HTTP (c1)", "us", False),
    ("idle_held", "idle TLS conns held", "", True),
    ("idle_rss", "RSS per idle conn", "B", False),
    ("idle_fd", "fds per idle conn", "", False),
]


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", required=True)
    ap.add_argument("--deny", required=True)
    ap.add_argument("--systems", default="direct moat squid nginx haproxy")
    args = ap.parse_args()
    systems = args.systems.split()

    data = {}
    with open(args.samples) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4:
                continue
            _, sysname, key, val = parts
            try:
                data.setdefault((sysname, key), []).append(float(val))
            except ValueError:
                pass
    deny = {}
    with open(args.deny) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                deny[(parts[0], parts[1])] = parts[2].split("=", 1)[1]

    def med(s, k):
        v = data.get((s, k))
        return statistics.median(v) if v else None

    def cell(s, k):
        v = data.get((s, k))
        if not v:
            return "n/a"
        if len(v) == 1:
            return fmt(v[0])
        return "%s (%s-%s)" % (fmt(statistics.median(v)), fmt(min(v)), fmt(max(v)))

    w0 = 34
    cw = max(12, max(len(cell(s, k)) for s in systems for k, *_ in METRICS) + 1)

    print()
    print("## Figures: median over the rounds (min-max)")
    print("%-*s %-5s" % (w0, "", "unit") + "".join("%*s" % (cw, s) for s in systems))
    for k, label, unit, _ in METRICS:
        print("%-*s %-5s" % (w0, label, unit) + "".join("%*s" % (cw, cell(s, k)) for s in systems))
    row = []
    for s in systems:
        if s == "direct":
            row.append("no rules")
        else:
            row.append("%s/%s" % (deny.get((s, "https"), "?"), deny.get((s, "http"), "?")))
    print("%-*s %-5s" % (w0, "deny works (TLS/HTTP, real curl)", "") + "".join("%*s" % (cw, c) for c in row))

    peers = [s for s in systems if s not in ("direct", "moat")]
    cols = [("%s/direct" % s, s, "direct") for s in systems if s != "direct" and "direct" in systems]
    if "moat" in systems:
        cols += [("moat/%s" % p, "moat", p) for p in peers]
    print()
    print("## Ratios of medians (for time, CPU, memory and fds lower is better; for rates higher)")
    rw = max(13, max((len(c[0]) for c in cols), default=0) + 2)
    print("%-*s" % (w0 + 6, "") + "".join("%*s" % (rw, c[0]) for c in cols))
    for k, label, unit, _ in METRICS:
        out = []
        for _, a, b in cols:
            va, vb = med(a, k), med(b, k)
            out.append("%.2fx" % (va / vb) if va is not None and vb else "-")
        if any(o != "-" for o in out):
            print("%-*s" % (w0 + 6, label) + "".join("%*s" % (rw, o) for o in out))
    if "direct" in systems:
        print()
        print("## Added latency over direct, p50 / p99 (us)")
        for s in systems:
            if s == "direct":
                continue
            parts = []
            for proto in ("https", "http"):
                d50, d99 = med("direct", "lat50_" + proto), med("direct", "lat99_" + proto)
                m50, m99 = med(s, "lat50_" + proto), med(s, "lat99_" + proto)
                if None in (d50, d99, m50, m99):
                    parts.append("%s -" % proto)
                else:
                    parts.append("%s %+.0f / %+.0f" % ("TLS" if proto == "https" else "HTTP",
                                                       m50 - d50, m99 - d99))
            print("  %-10s %s" % (s, "   ".join(parts)))

    if "moat" not in systems:
        return 0
    print()
    print("## Aims (moat)")

    def aim(text, ok, measured):
        print("  %-62s %-28s %s" % (text, measured, "met" if ok else "NOT met"))

    m, h = med("moat", "cpugib_https"), med("haproxy", "cpugib_https")
    if m is not None and h:
        aim("CPU per GiB (TLS) <= 1/3 of HAProxy's", m <= h / 3,
            "%s s vs %s s (%.2fx)" % (fmt(m), fmt(h), m / h))
    m, h = med("moat", "cpugib_http"), med("haproxy", "cpugib_http")
    if m is not None and h:
        aim("CPU per GiB (HTTP) <= 1/3 of HAProxy's", m <= h / 3,
            "%s s vs %s s (%.2fx)" % (fmt(m), fmt(h), m / h))
    for proto in ("https", "http"):
        m = med("moat", "cpuconn_" + proto)
        if m is not None:
            aim("CPU per new connection (%s) <= 150 us" % ("TLS" if proto == "https" else "HTTP"),
                m <= 150, "%s us" % fmt(m))
    m, d = med("moat", "tput_http"), med("direct", "tput_http")
    if m is not None and d:
        aim("plain HTTP throughput >= 0.9 x direct (every request judged)", m >= 0.9 * d,
            "%.2fx" % (m / d))
    m = med("moat", "idle_rss")
    if m is not None:
        aim("RSS per idle connection <= 2 KiB", m <= 2048, "%s B" % fmt(m))
    m = med("moat", "idle_fd")
    if m is not None:
        aim("10,000 idle connections within 20,000 fds", m * 10000 + 64 <= 20000,
            "%s fds/conn -> %.0f fds" % (fmt(m), m * 10000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
