"""Benchmark harness shared by scripts/bench-*: runs commands, measures each
one's wall time and peak RSS (of the child and its children), and prints a
table with ratios against baselines measured in the same invocation."""
import os
import resource
import subprocess
import sys
import time


def run(label, argv, env=None):
    """Run ARGV in its own process tree; return (seconds, peak RSS in MB)."""
    # A fresh fork server per command, so RUSAGE_CHILDREN's max is this command's.
    code = ("import resource,subprocess,sys,time;t=time.monotonic();"
            "r=subprocess.run(sys.argv[1:]);s=time.monotonic()-t;"
            "m=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
            "print(f'{s} {m} {r.returncode}',file=sys.stderr);sys.exit(r.returncode)")
    p = subprocess.run([sys.executable, "-c", code] + list(argv), env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
    try:
        secs, rss_kb, rc = last.split()
    except ValueError:
        print(p.stderr, file=sys.stderr)
        raise SystemExit(f"{label}: harness failed")
    if int(rc) != 0:
        print(p.stderr, file=sys.stderr)
        raise SystemExit(f"{label}: exited {rc}")
    return float(secs), int(rss_kb) / 1024.0


def table(rows, base_time, base_rss=None):
    print(f"{'what':44} {'seconds':>8} {'peak RSS MB':>12} {'time ratio':>11}")
    for label, secs, rss in rows:
        print(f"{label:44} {secs:8.2f} {rss:12.0f} {secs / base_time:10.2f}x")


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
