"""Optional tier: `weld scan` against picklescan on the same files.

Run by ctest (test `picklescan_compare`) when $WELD_PYTHON imports picklescan;
exits 77 (skipped) otherwise. Files: the hostile corpus (tests/fixtures/hostile,
one payload beside a valid tensor each) and every real checkpoint pickle in the
fixtures. Prints one line per file where the two disagree and a summary table;
with --markdown, the table in Markdown (for the README and closing notes).

Asserts what weld promises, not what picklescan does:
  - every hostile file is unsafe for weld (picklescan may miss some: listed);
  - every real checkpoint file is safe for weld, except the Trainer's
    training_args.bin (transformers classes, refused as torch's weights_only
    loader refuses them).
picklescan's verdict: dangerous when any global is "dangerous", suspicious
when any is "suspicious" (on neither of its lists: it passes those), else
innocuous; a scan error counts as an error.
Usage: picklescan_compare.py WELD SOURCE_DIR [--markdown]
"""
import json
import os
import subprocess
import sys

try:
    from picklescan.scanner import SafetyLevel, scan_file_path
    from importlib.metadata import version
except ImportError as e:  # the tier is optional
    print(f"picklescan comparison skipped: {e}")
    sys.exit(77)

weld, src = sys.argv[1], sys.argv[2]
markdown = "--markdown" in sys.argv
fx = os.path.join(src, "tests", "fixtures")
REAL_DIRS = ["zero", "zero_versions", "trainer", "qwen2_tied", "torch_edge", "megatron", "dcp"]
EXTS = (".pt", ".bin", ".pkl", ".pth", ".metadata")


def files_in(top):
    out = []
    for d, _, names in os.walk(top):
        out += [os.path.join(d, n) for n in names if n.endswith(EXTS)]
    return sorted(out)


def weld_verdicts(paths):
    r = subprocess.run([weld, "scan", "--json", *paths], capture_output=True, text=True)
    if r.returncode not in (0, 1):
        sys.exit(f"weld scan exited {r.returncode}: {r.stderr}")
    return {f["path"]: f["verdict"] for f in json.loads(r.stdout)["files"]}


def picklescan_verdict(path):
    r = scan_file_path(path)
    if r.scan_err:
        return "error"
    levels = {g.safety for g in r.globals}
    if SafetyLevel.Dangerous in levels:
        return "dangerous"
    if SafetyLevel.Suspicious in levels:
        return "suspicious"
    return "innocuous"


hostile = [p for p in files_in(os.path.join(fx, "hostile")) if not p.endswith("control_ok.pt")]
real = [p for d in REAL_DIRS for p in files_in(os.path.join(fx, d))]
ours = weld_verdicts(hostile + real)
fails = 0
rows = []
for label, paths in (("hostile", hostile), ("real", real)):
    counts = {}
    for p in paths:
        w, ps = ours[p], picklescan_verdict(p)
        counts[(w, ps)] = counts.get((w, ps), 0) + 1
        rel = os.path.relpath(p, fx)
        expect_safe = label == "real" and os.path.basename(p) != "training_args.bin"
        if (w == "safe") != expect_safe:
            print(f"FAIL: {rel}: weld says {w}")
            fails += 1
        # What picklescan's own CLI reports as infected or failed; "suspicious" (a global
        # on neither of its lists) it reports without failing.
        flagged = ps in ("dangerous", "error")
        if (w != "safe") != flagged:
            print(f"differ: {rel}: weld {w}, picklescan {ps}")
    for (w, ps), n in sorted(counts.items()):
        rows.append((label, w, ps, n))

print(f"\nweld scan vs picklescan {version('picklescan')} ({len(hostile)} hostile, {len(real)} real files)")
if markdown:
    print("| files | weld | picklescan | count |\n|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %d |" % r)
else:
    print("%-8s %-10s %-11s %5s" % ("FILES", "WELD", "PICKLESCAN", "COUNT"))
    for r in rows:
        print("%-8s %-10s %-11s %5d" % r)
sys.exit(1 if fails else 0)
