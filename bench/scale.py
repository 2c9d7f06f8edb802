"""scripts/bench-scale: how weld's planning scales with world size and model size.

Writes shape-only checkpoints (bench/sparse_ckpt.py: real zip directories,
pickles and headers, tensor data left as holes) of Llama-3 8B / 70B / 405B as
DeepSpeed ZeRO-3 and ZeRO-2 Trainer checkpoints at several world sizes and as
HF sharded safetensors, plans each with weld (`weld convert --dry-run` when
this weld has it, else `weld batch --dry-run`: either opens every file,
parses every pickle and header and builds the whole plan, and writes
nothing), and reports wall time and peak RSS. Then converts one 8B ZeRO-3
checkpoint for real (its holes read as zeros) to show that weld reads the
master bytes and no more, with flat memory.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sparse_ckpt as sc  # noqa: E402

GEN_VERSION = 1  # bump when the generated files change, to regenerate cached ones
FULL = [("8B", [8, 64, 512]), ("70B", [512, 2048]), ("405B", [1024, 4096, 8192])]
QUICK = [("8B", [8, 64, 512]), ("70B", [512])]
TARGET = ("405B", 8192, 30.0, 1024.0)  # shape, world size, plan seconds, peak RSS MiB


def log(msg):
    print(f"bench-scale: {msg}", file=sys.stderr, flush=True)


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def disk_bytes(path):
    """Blocks actually allocated under PATH (what the sparse files cost)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


# Runs the command and reports its time and peak RSS. A small fresh process starts it: a child forked
# from this one (torch imported) would count our pages in its ru_maxrss, which exec does not reset.
_STARTER = """
import os, resource, subprocess, sys, time
cap = int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
def pre():
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
t = time.monotonic()
p = subprocess.Popen(sys.argv[3:], preexec_fn=pre)
_, status, ru = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.monotonic() - t} {ru.ru_maxrss} {os.waitstatus_to_exitcode(status)} {ru.ru_utime + ru.ru_stime}")
"""


def run(argv, cap=0, sample=False):
    """Run ARGV with the open-files limit at its hard limit and address space capped at CAP bytes (0: none).

    Returns (rc, seconds, peak RSS MiB, stdout, stderr, [(seconds, RSS MiB)] sampled every 0.25 s if SAMPLE,
    CPU seconds (user + system))."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as res:
        t = time.monotonic()
        p = subprocess.Popen([sys.executable, "-c", _STARTER, res.name, str(cap)] + list(argv),
                             stdout=out, stderr=err)
        samples, done = [], threading.Event()

        def poll():
            while not done.wait(0.25):
                try:
                    with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                        kids = f.read().split()
                    if kids:
                        with open(f"/proc/{kids[0]}/status") as f:
                            for line in f:
                                if line.startswith("VmRSS:"):
                                    samples.append((time.monotonic() - t, int(line.split()[1]) / 1024))
                except (OSError, ValueError):
                    pass

        th = threading.Thread(target=poll, daemon=True) if sample else None
        if th:
            th.start()
        p.wait()
        done.set()
        if th:
            th.join()
        fields = res.read().split()
        out.seek(0)
        err.seek(0)
        o, e = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if p.returncode or len(fields) != 4:
            raise SystemExit(f"bench-scale: could not run {argv[0]}: {e.strip()}")
        secs, rss_kb, rc, cpu = float(fields[0]), int(fields[1]), int(fields[2]), float(fields[3])
        return rc, secs, rss_kb / 1024, o, e, samples, cpu


class Bench:
    def __init__(self, args):
        self.a = args
        self.weld = os.path.abspath(args.weld)
        self.work = os.path.abspath(args.workdir)
        self.ck = os.path.join(self.work, "ckpt")
        os.makedirs(self.ck, exist_ok=True)
        self.fixtures = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                     "tests", "fixtures", "trainer")
        self._tpl = None
        h = subprocess.run([self.weld, "convert", "--help"], capture_output=True, text=True)
        self.convert_dry = "--dry-run" in h.stdout + h.stderr
        self.cap = int(args.mem_cap_gb * (1 << 30)) if args.mem_cap_gb else 0

    @property
    def tpl(self):
        if self._tpl is None:
            self._tpl = sc.load_templates(self.fixtures)
        return self._tpl

    def case_dir(self, shape, kind, world):
        return os.path.join(self.ck, f"{shape}-{kind}" + (f"-w{world}" if world else ""))

    def generate(self, shape, kind, world):
        """The case's run folder (holding checkpoint-100/), generated unless a complete one is there."""
        d = self.case_dir(shape, kind, world)
        stamp = os.path.join(d, ".complete")
        if os.path.exists(stamp):
            info = json.load(open(stamp))
            if info.get("version") == GEN_VERSION:
                return d, info
        shutil.rmtree(d, ignore_errors=True)
        log(f"generating {shape} {kind}" + (f" at world size {world}" if world else "") + " ...")
        t = time.monotonic()
        ck = os.path.join(d, "checkpoint-100")
        shapes, config = sc.llama_shapes(shape)
        if kind == "hf":
            files = sc.write_hf(ck, shape, config) + 1
            masters = 2 * sum(sc.numel(s) for _, s in shapes)
        else:
            files, masters, _ = sc.write_zero(ck, self.tpl, shape, 3 if kind == "zero3" else 2, world,
                                              log=lambda m: log(f"  {m}"))
        info = {"version": GEN_VERSION, "files": files, "tensors": len(shapes), "masters": masters,
                "params": sum(sc.numel(s) for _, s in shapes), "gen_seconds": time.monotonic() - t,
                "disk": disk_bytes(d)}
        json.dump(info, open(stamp, "w"))
        log(f"  {files} files in {info['gen_seconds']:.1f} s, {info['disk'] / 1e6:.0f} MB on disk")
        return d, info

    def plan(self, d):
        out = os.path.join(self.work, "plan-out")
        if self.convert_dry:
            argv = [self.weld, "convert", "--input", os.path.join(d, "checkpoint-100"), "--output", out, "--dry-run",
                    "--json"]
        else:
            argv = [self.weld, "batch", "--input-dir", d, "--output-dir", out, "--dry-run"]
        return run(argv, self.cap)

    def matrix(self):
        rows = []
        cases = QUICK if self.a.quick else FULL
        for shape, worlds in cases:
            if self.a.only and shape not in self.a.only:
                continue
            for kind in ("zero3", "zero2", "hf"):
                for world in (worlds if kind != "hf" else [0]):
                    d, info = self.generate(shape, kind, world)
                    rc, secs, rss, out, err, _, cpu = self.plan(d)
                    why, reached = "", world
                    if rc:
                        lines = err.strip().splitlines() or ["?"]
                        last = next((ln for ln in lines if "error" in ln), lines[-1])
                        why = last[-60:]
                        if "out of memory" in last:
                            m = re.search(r"zero_pp_rank_(\d+)_", last)
                            why = f"out of memory at the {self.cap / (1 << 30):.0f} GiB cap" + \
                                (f", reading rank {m.group(1)}" if m else "")
                            reached = int(m.group(1)) if m else 0
                        log(f"{shape} {kind} {world or ''}: weld exited {rc}: {last}")
                    try:
                        tables = json.loads(out).get("plan_bytes") if self.convert_dry and not rc else None
                    except ValueError:
                        tables = None
                    rows.append(dict(shape=shape, kind=kind, world=world, files=info["files"], tables=tables,
                                     tensors=info["tensors"], secs=secs, cpu=cpu, rss=rss, rc=rc, why=why,
                                     reached=reached,
                                     gen=info["gen_seconds"], disk=info["disk"]))
                    log(f"{shape} {kind} {world or '-'}: planned in {secs:.2f} s ({cpu:.2f} s CPU), peak RSS {rss:.0f} MB"
                        + (f" (FAILED: {why})" if rc else ""))
                    if not self.a.keep:
                        shutil.rmtree(d)
        return rows

    def e2e(self):
        d, info = self.generate("8B", "zero3", 8)
        out = os.path.join(os.path.abspath(self.a.out) if self.a.out else self.work, "e2e-out")
        argv = [self.weld, "convert", "--input", os.path.join(d, "checkpoint-100"), "--output", out,
                "--force", "--json", "--device", "cpu"]
        log("converting the 8B ZeRO-3 checkpoint (world size 8) for real ...")
        rc, secs, rss, sout, err, samples, cpu = run(argv, 0, sample=True)
        if rc:
            raise SystemExit(f"bench-scale: end-to-end conversion failed: {err.strip()}")
        j = json.loads(sout)
        shutil.rmtree(out, ignore_errors=True)
        if not self.a.keep:
            shutil.rmtree(d)
        mid = [m for t, m in samples if 0.1 * secs <= t <= 0.9 * secs] or [m for _, m in samples] or [rss]
        return dict(secs=secs, cpu=cpu, rss=rss, read=j["bytes_read"], to_read=j.get("bytes_to_read", 0),
                    written=j["bytes_written"], masters=info["params"] * 4, partitions=info["masters"],
                    tensors=j.get("tensors"), rss_min=min(mid), rss_med=statistics.median(mid),
                    rss_max=max(mid), nsamples=len(samples), threads=j.get("threads"))


def report(rows, e2e, bench):
    if rows:
        table(rows, bench)
    if e2e:
        print()
        print(f"end to end: 8B ZeRO-3, world size 8, converted to bf16 ({e2e['threads']} threads): "
              f"{e2e['secs']:.1f} s ({e2e['cpu']:.1f} s CPU), peak RSS {e2e['rss']:.0f} MB")
        print(f"  read {e2e['read']:,} B = {e2e['read'] / e2e['masters']:.5f} x the fp32 master bytes "
              f"({e2e['masters']:,} B): the tensor data planned ({e2e['to_read']:,} B) and "
              f"{e2e['read'] - e2e['to_read']:,} B of pickles and headers; wrote {e2e['written']:,} B")
        print(f"  RSS while converting (10%-90% of the run, {e2e['nsamples']} samples every 0.25 s): "
              f"min {e2e['rss_min']:.0f} MB, median {e2e['rss_med']:.0f} MB, max {e2e['rss_max']:.0f} MB")


def table(rows, bench):
    print(f"planning: {'weld convert --dry-run' if bench.convert_dry else 'weld batch --dry-run'} ({bench.weld}); "
          + (f"address space capped at {bench.cap / (1 << 30):.1f} GiB" if bench.cap else "no memory cap")
          + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall time counts waiting for them)")
    hdr = (f"{'shape':6} {'kind':5} {'world':>5} {'files':>6} {'tensors':>7} {'plan s':>7} {'CPU s':>7} "
           f"{'peak RSS MB':>11} {'tables MB':>9} {'CPU us/(rank*t)':>15} {'B/(rank*t)':>10} {'gen s':>6} "
           f"{'disk MB':>7}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        units = max(r["world"], 1) * r["tensors"]
        per = f"{r['cpu'] * 1e6 / units:15.2f} {r['rss'] * (1 << 20) / units:10.0f}"
        status = ""
        if r["rc"]:
            per = f"{'-':>15} {'-':>10}"
            status = f"  FAILED: {r['why']}"
            if r["reached"]:
                f = r["world"] / r["reached"]
                status += f"; linearly ~{r['rss'] * f / 1024:.0f} GB, ~{r['cpu'] * f:.0f} s CPU for all ranks"
        print(f"{r['shape']:6} {r['kind']:5} {r['world'] or '-':>5} {r['files']:>6} {r['tensors']:>7} "
              f"{r['secs']:7.2f} {r['cpu']:7.2f} {r['rss']:11.0f} "
              f"{r['tables'] / 1e6 if r['tables'] is not None else '-':>9{'.1f' if r['tables'] is not None else ''}} "
              f"{per} {r['gen']:6.1f} {r['disk'] / 1e6:7.0f}{status}")
    print()
    print("linearity: CPU time and peak RSS per rank x tensor over the cases of at least 10^5 ranks x tensors")
    print("(smaller ones are start-up; a constant means cost linear in ranks x tensors):")
    for kind in ("zero3", "zero2"):
        ok = [r for r in rows if r["kind"] == kind and not r["rc"] and r["world"] * r["tensors"] >= 100000]
        if not ok:
            continue
        t = [r["cpu"] * 1e6 / (r["world"] * r["tensors"]) for r in ok]
        m = [r["rss"] * (1 << 20) / (r["world"] * r["tensors"]) for r in ok]
        cases = ", ".join(f"{r['shape']}@{r['world']} {a:.2f} us {b:.0f} B" for r, a, b in zip(ok, t, m))
        print(f"  {kind}: {cases}; max/min: time {max(t) / min(t):.2f}, RSS {max(m) / min(m):.2f}")
        if kind == "zero2":
            print("  (ZeRO-2 has one model states file and cuts each tensor where partitions end: its cost grows"
                  " with ranks + tensors, so per rank x tensor it falls)")
    shape, world, tsecs, trss = TARGET
    for kind in ("zero3", "zero2"):
        r = next((r for r in rows if (r["shape"], r["world"], r["kind"]) == (shape, world, kind)), None)
        if r:
            verdict = "PASS" if not r["rc"] and r["secs"] < tsecs and r["rss"] < trss else "FAIL"
            print(f"target {shape} {kind} at world size {world}: plan < {tsecs:.0f} s and < {trss / 1024:.0f} GiB "
                  f"peak RSS: {verdict} ({r['secs']:.1f} s, {r['cpu']:.1f} s CPU, {r['rss']:.0f} MB"
                  + (f", {r['why']}" if r["rc"] else "") + ")")


def main():
    ap = argparse.ArgumentParser(prog="bench-scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", nargs="?", default="/tmp/weld-bench-scale")
    ap.add_argument("--quick", action="store_true", help="8B at 8/64/512 and 70B at 512 ranks, and their HF folders")
    ap.add_argument("--only", action="append", choices=["8B", "70B", "405B"], help="only these shapes (repeatable)")
    ap.add_argument("--no-e2e", dest="e2e", action="store_false", help="skip the end-to-end conversion")
    ap.add_argument("--e2e-only", action="store_true", help="only the end-to-end conversion")
    ap.add_argument("--no-selfcheck", dest="selfcheck", action="store_false",
                    help="skip checking the generator against torch.save and zero_to_fp32")
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints (reused by the next run)")
    ap.add_argument("--mem-cap-gb", type=float, default=None,
                    help="address-space cap for each planning run (default: half of MemAvailable, at most 8)")
    ap.add_argument("--weld", default=os.environ.get("WELD", "build/weld"))
    ap.add_argument("--out", default=os.environ.get("BENCH_OUT") or None,
                    help="where the end-to-end output goes (default: WORKDIR)")
    a = ap.parse_args()
    if a.mem_cap_gb is None:
        a.mem_cap_gb = min(8.0, 0.5 * mem_available() / (1 << 30))
    t0 = time.monotonic()
    b = Bench(a)
    if a.selfcheck:
        t = time.monotonic()
        n = sc.selfcheck(b.fixtures, b.work)
        n2 = sc.crosscheck_zero_to_fp32(b.tpl, os.path.join(b.work, "crosscheck"), b.weld)
        log(f"generator self-check: {n} real DeepSpeed files rewritten byte for byte, torch's ZIP64 layout "
            f"matched, {n2} small generated checkpoints rebuilt exactly by zero_to_fp32 and weld "
            f"({time.monotonic() - t:.1f} s)")
    rows = [] if a.e2e_only else b.matrix()
    e2e = b.e2e() if a.e2e or a.e2e_only else None
    report(rows, e2e, b)
    print(f"total {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
