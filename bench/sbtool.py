#!/usr/bin/env python3
"""Helper for bench/passthrough.sh (python3 standard library only).

  sbtool.py run --records F --raw F --test T --threads N --endpoint E
                [--proxy-pid P] [--db-pid P] [--clk-tck N] -- sysbench ...
      Runs one measured sysbench command. Around it, samples utime+stime of
      the watched processes from /proc/<pid>/stat and the CPU time of the
      sysbench child (getrusage). Parses QPS, query count and p95 latency from
      sysbench's report and appends one JSON record to --records. Exits 0 even
      when sysbench fails (the failure is recorded), so one broken endpoint
      does not stop the run.

  sbtool.py report --records F [--title S]
      Prints the results table and the issue's target lines.
"""

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

ENDPOINT_ORDER = {"direct": 0, "haproxy": 1, "shardgate": 2}

# Target of issue 2, section 6 (pass-through stage).
TARGET_TEST = "oltp_point_select"
TARGET_THREADS = 8
TARGET_QPS_RATIO = 0.90      # ShardGate QPS / HAProxy QPS
TARGET_PROXY_US = 25.0       # ShardGate CPU µs per query


# ---------------------------------------------------------------- /proc ----

def proc_cpu(pid):
    """(starttime, utime+stime) in clock ticks, or None if the pid is gone."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces:
    # split after the last ')'. Fields then start at field 3 ("state").
    rest = data[data.rindex(")") + 2:].split()
    utime, stime, starttime = int(rest[11]), int(rest[12]), int(rest[19])
    return starttime, utime + stime


def cpu_delta_us(before, after, clk_tck):
    if before is None or after is None or before[0] != after[0]:
        return None  # process missing, or died and pid got reused
    return (after[1] - before[1]) * 1_000_000 / clk_tck


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# ------------------------------------------------------- sysbench output ----

def parse_sysbench(text):
    out = {}
    m = re.search(r"^\s*queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)", text, re.M)
    if m:
        out["queries"] = int(m.group(1))
        out["qps"] = float(m.group(2))
    m = re.search(r"^\s*transactions:\s+(\d+)\s+\(([\d.]+) per sec\.\)", text, re.M)
    if m:
        out["events"] = int(m.group(1))
        out["tps"] = float(m.group(2))
    m = re.search(r"^\s*(\d+)th percentile:\s+([\d.]+)", text, re.M)
    if m:
        out["p95_ms"] = float(m.group(2))
    m = re.search(r"^\s*ignored errors:\s+(\d+)", text, re.M)
    if m:
        out["ignored_errors"] = int(m.group(1))
    m = re.search(r"^\s*total time:\s+([\d.]+)s", text, re.M)
    if m:
        out["seconds"] = float(m.group(1))
    return out


def first_fatal(text):
    lines = [l.strip() for l in text.splitlines()]
    # Prefer the server's or client library's message ("MySQL error: 1146 ...",
    # "error 2002: Can't connect ...") over sysbench's generic FATAL lines.
    for l in lines:
        if re.search(r"(MySQL error|error \d+):", l):
            return l[:200]
    fatal = [l for l in lines if "FATAL" in l or "error" in l.lower()]
    return fatal[0][:200] if fatal else "sysbench produced no report"


def cmd_run(a):
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        sys.exit("sbtool run: missing '-- sysbench ...'")
    clk_tck = a.clk_tck or os.sysconf("SC_CLK_TCK")

    # On SIGTERM (the script being stopped) raise SystemExit, so that
    # subprocess.run kills sysbench instead of leaving it running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    p0, d0, c0, t0 = proc_cpu(a.proxy_pid), proc_cpu(a.db_pid), children_cpu_s(), time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    p1, d1, c1, t1 = proc_cpu(a.proxy_pid), proc_cpu(a.db_pid), children_cpu_s(), time.monotonic()

    with open(a.raw, "a") as f:
        f.write(f"\n===== {a.test} threads={a.threads} endpoint={a.endpoint} "
                f"rc={proc.returncode} =====\n$ {' '.join(cmd)}\n{proc.stdout}")

    rec = {"test": a.test, "threads": a.threads, "endpoint": a.endpoint,
           "rc": proc.returncode, "wall_s": round(t1 - t0, 3)}
    rec.update(parse_sysbench(proc.stdout))
    ok = proc.returncode == 0 and rec.get("queries", 0) > 0
    rec["ok"] = ok
    if not ok:
        rec["error"] = first_fatal(proc.stdout)
    else:
        q = rec["queries"]
        proxy_us = cpu_delta_us(p0, p1, clk_tck) if a.proxy_pid else None
        db_us = cpu_delta_us(d0, d1, clk_tck) if a.db_pid else None
        rec["proxy_us_q"] = None if proxy_us is None else proxy_us / q
        rec["db_us_q"] = None if db_us is None else db_us / q
        rec["client_us_q"] = (c1 - c0) * 1e6 / q
        if a.proxy_pid and proxy_us is None:
            rec["warning"] = f"proxy pid {a.proxy_pid} vanished during the run"
    with open(a.records, "a") as f:
        f.write(json.dumps(rec) + "\n")

    if ok:
        print(f"{rec['qps']:>10.0f} qps  p95 {rec.get('p95_ms', float('nan')):.2f} ms"
              f"  proxy {fmt_us(rec['proxy_us_q'])} µs/q  mariadbd {fmt_us(rec['db_us_q'])} µs/q")
    else:
        print(f"FAILED (rc={proc.returncode}): {rec['error']}")
    return 0


# ---------------------------------------------------------------- report ----

def fmt_us(v):
    return "-" if v is None else f"{v:.1f}"


def fmt_pct(v):
    return "-" if v is None else f"{v * 100:.1f}%"


def load(path):
    recs = []
    try:
        with open(path) as f:
            for line in f:
                if line.strip():
                    recs.append(json.loads(line))
    except FileNotFoundError:
        pass
    return recs


def cmd_report(a):
    recs = load(a.records)
    by_key = {(r["test"], r["threads"], r["endpoint"]): r for r in recs}
    tests = []
    for r in recs:
        if r["test"] not in tests:
            tests.append(r["test"])
    recs.sort(key=lambda r: (tests.index(r["test"]), r["threads"],
                             ENDPOINT_ORDER.get(r["endpoint"], 9)))

    def qps(test, threads, ep):
        r = by_key.get((test, threads, ep))
        return r["qps"] if r and r.get("ok") else None

    hdr = ("test", "thr", "endpoint", "QPS", "p95 ms", "vs direct", "SG/HAProxy",
           "proxy µs/q", "mariadbd µs/q", "client µs/q")
    rows = []
    for r in recs:
        t, n, ep = r["test"], r["threads"], r["endpoint"]
        if not r.get("ok"):
            rows.append((t, str(n), ep, "FAILED", "-", "-", "-", "-", "-", "-"))
            continue
        d, h = qps(t, n, "direct"), qps(t, n, "haproxy")
        vs_direct = r["qps"] / d if d else None
        sg_hap = r["qps"] / h if (ep == "shardgate" and h) else None
        rows.append((t, str(n), ep, f"{r['qps']:.0f}", f"{r['p95_ms']:.2f}" if "p95_ms" in r else "-",
                     fmt_pct(vs_direct), fmt_pct(sg_hap), fmt_us(r.get("proxy_us_q")),
                     fmt_us(r.get("db_us_q")), fmt_us(r.get("client_us_q"))))
    widths = [max(len(hdr[i]), *(len(row[i]) for row in rows)) if rows else len(hdr[i])
              for i in range(len(hdr))]
    left = {0, 2}

    def line(cells):
        return "  ".join(c.ljust(widths[i]) if i in left else c.rjust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    if a.title:
        print(a.title)
    print(line(hdr))
    print(line(["-" * w for w in widths]))
    prev = None
    for row in rows:
        if prev is not None and row[:2] != prev:
            print()
        prev = row[:2]
        print(line(row))
    for r in recs:
        if not r.get("ok"):
            print(f"  FAILED {r['test']} {r['threads']} thr {r['endpoint']}: {r.get('error')}")
        elif r.get("warning"):
            print(f"  warning {r['test']} {r['threads']} thr {r['endpoint']}: {r['warning']}")
        elif r.get("ignored_errors"):
            print(f"  note {r['test']} {r['threads']} thr {r['endpoint']}: "
                  f"{r['ignored_errors']} ignored errors")

    # Target lines (never a failure: the script exits 0 on a miss).
    print()
    print(f"Target (issue 2 §6, {TARGET_TEST} @ {TARGET_THREADS} threads):")
    sg = by_key.get((TARGET_TEST, TARGET_THREADS, "shardgate"))
    hap = by_key.get((TARGET_TEST, TARGET_THREADS, "haproxy"))
    sg_ok = bool(sg and sg.get("ok"))
    hap_ok = bool(hap and hap.get("ok"))
    label1 = f"  ShardGate QPS >= {TARGET_QPS_RATIO:.0%} of HAProxy QPS"
    label2 = f"  ShardGate proxy CPU <= {TARGET_PROXY_US:.0f} µs/query"
    if sg_ok and hap_ok:
        ratio = sg["qps"] / hap["qps"]
        verdict = "PASS" if ratio >= TARGET_QPS_RATIO else "MISS"
        print(f"{label1}: {sg['qps']:.0f} / {hap['qps']:.0f} = {ratio:.1%}  {verdict}")
    else:
        why = "ShardGate not measured" if not sg_ok else "HAProxy not measured"
        print(f"{label1}: n/a ({why})  MISS")
    if sg_ok and sg.get("proxy_us_q") is not None:
        v = sg["proxy_us_q"]
        verdict = "PASS" if v <= TARGET_PROXY_US else "MISS"
        print(f"{label2}: {v:.1f} µs  {verdict}")
    else:
        print(f"{label2}: n/a (ShardGate not measured)  MISS")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd_name", required=True)
    r = sub.add_parser("run")
    r.add_argument("--records", required=True)
    r.add_argument("--raw", required=True)
    r.add_argument("--test", required=True)
    r.add_argument("--threads", required=True, type=int)
    r.add_argument("--endpoint", required=True)
    r.add_argument("--proxy-pid", type=int)
    r.add_argument("--db-pid", type=int)
    r.add_argument("--clk-tck", type=int)
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("report")
    p.add_argument("--records", required=True)
    p.add_argument("--title")
    a = ap.parse_args()
    return cmd_run(a) if a.cmd_name == "run" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
