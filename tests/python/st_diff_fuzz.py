#!/usr/bin/env python3
"""Differential fuzzing of weld's safetensors header reader against the
reference reader (the `safetensors` package).

    st_diff_fuzz.py WELD_BINARY [--cases N] [--seconds S] [--seed X]

Generates safetensors files from structured random headers (valid ones and
mutations of them), reads each with both, and requires that they agree on
accept/refuse and, when both accept, on every tensor's name, dtype, shape and
byte size. `weld inspect --json` shows no data offsets, so every Nth file
both accept (--convert-every) is also converted with --dtype keep, and each
output tensor's bytes must be the input's at the offsets the reference read:
the data is random, so bytes taken from the wrong offsets differ.

A disagreement is shrunk (header members dropped while it persists) and
printed with the header's hex. Exits 77 (skipped) when safetensors is not
importable, 1 on a disagreement not in EXPECTED_DEVIATIONS.
"""
import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time

try:
    from safetensors import safe_open
except ImportError:
    print("st_diff_fuzz: skipped: python cannot import safetensors")
    sys.exit(77)

# Element sizes in bits: the reference's dtype list (0.8.0), sub-byte ones included.
DTYPES = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
          "F8_E5M2FNUZ": 8, "I16": 16,
          "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64,
          "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}
ODD_DTYPES = ["I4", "F8", "f32", "", "F8_E4M3FN", "C128", "Q4_0", "F32 ", 7]
NAMES = ["w", "model.layers.0.weight", "lm_head.weight", "\u00e9t\u00e9", "\U0001f600", "a b",
         "a\u0000b", "\u0000", "x" * 40, "__metadata__x", "0", "w\"q", "w\\q", "\ud800"]


def sizeof(dtype, shape):
    """Byte size the reference requires, or None when not whole bytes / unknown dtype."""
    if dtype not in DTYPES:
        return None
    bits = DTYPES[dtype]
    for d in shape:
        bits *= d
    return bits // 8 if bits % 8 == 0 else None


class Case:
    """A header as an ordered member list (so duplicates and odd values survive),
    the data section's length and byte-level edits applied after serialising."""

    def __init__(self):
        self.members = []      # (key, value) pairs; value is JSON-able or RawJSON
        self.data_len = 0
        self.lead_ws = ""      # before the '{'
        self.pad = b""         # after the '}' (safetensors pads with spaces)
        self.hlen_delta = 0    # added to the true header length
        self.cut = 0           # bytes cut off the end of the file
        self.byte_edits = []   # (position, replacement bytes, length replaced) in the header text
        self.tags = set()      # what was done, for the deviation list
        self.data_seed = 0     # the data bytes: random, so every tensor's bytes tell where they came from

    def encode(self):
        parts = []
        for k, v in self.members:
            val = v.text if isinstance(v, RawJSON) else json.dumps(v)
            parts.append(json.dumps(k) + ":" + val)
        text = (self.lead_ws + "{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")
        for at, rep, n in self.byte_edits:
            at %= len(text) + 1
            text = text[:at] + rep + text[at + n:]
        text += self.pad
        n = min(max(0, len(text) + self.hlen_delta), 2 ** 64 - 1)
        blob = struct.pack("<Q", n) + text + random.Random(self.data_seed).randbytes(self.data_len)
        return blob[:len(blob) - self.cut] if self.cut else blob

    def header_hex(self):
        b = self.encode()
        return b[:8 + min(len(b) - 8, 4096)].hex()


class RawJSON:
    def __init__(self, text):
        self.text = text


def rand_shape(rng):
    r = rng.random()
    if r < 0.05:
        return []
    if r < 0.1:
        return [rng.choice([0, 1]), rng.randint(0, 3)]
    return [rng.choice([1, 2, 3, 4, 8]) for _ in range(rng.randint(1, 3))]


def valid_case(rng):
    c = Case()
    c.data_seed = rng.getrandbits(32)
    tensors = []
    for i in range(rng.randint(0, 5)):
        while True:
            dt = rng.choice(list(DTYPES))
            shape = rand_shape(rng)
            if sizeof(dt, shape) is not None:
                break
        name = rng.choice(NAMES[:6]) + str(i) if rng.random() < 0.5 else "t%d" % i
        tensors.append([name, dt, shape, sizeof(dt, shape)])
    # Data order independent of header order: offsets come out unsorted in the header.
    order = list(range(len(tensors)))
    rng.shuffle(order)
    pos = 0
    offs = {}
    for i in order:
        offs[i] = [pos, pos + tensors[i][3]]
        pos += tensors[i][3]
    for i, (name, dt, shape, _) in enumerate(tensors):
        c.members.append((name, {"dtype": dt, "shape": shape, "data_offsets": offs[i]}))
    if rng.random() < 0.4:
        c.members.insert(rng.randint(0, len(c.members)), ("__metadata__", {"format": "pt"}))
    c.data_len = pos
    if rng.random() < 0.3:
        c.pad = b" " * rng.randint(1, 8)  # the reference writer pads to a multiple of 8
    return c


def tensor_members(c):
    return [i for i, (k, v) in enumerate(c.members) if isinstance(v, dict) and k != "__metadata__"]


def mutate(c, rng):
    """One mutation, named in c.tags."""
    ts = tensor_members(c)
    m = rng.choice(["gap", "overlap", "end", "data_len", "dtype", "huge", "zero", "neg", "dup",
                    "meta", "ws", "name", "cut", "hlen", "extra", "missing", "offsets", "raw",
                    "lex", "lex", "bytes", "bytes"])
    if m in ("gap", "overlap", "end", "dtype", "huge", "zero", "neg", "extra", "missing",
             "offsets", "dup") and not ts:
        m = "meta"
    c.tags.add(m)
    if ts:
        k, t = c.members[rng.choice(ts)]
    if m == "gap":
        t["data_offsets"] = [t["data_offsets"][0] + 1, t["data_offsets"][1] + 1]
        c.data_len += rng.choice([0, 1])
    elif m == "overlap":
        t["data_offsets"] = [max(0, t["data_offsets"][0] - 1), t["data_offsets"][1]]
    elif m == "end":
        t["data_offsets"] = [t["data_offsets"][0], t["data_offsets"][1] + rng.choice([-1, 1, 2 ** 40])]
    elif m == "data_len":
        c.data_len += rng.choice([-1, 1, 8])
        c.data_len = max(0, c.data_len)
    elif m == "dtype":
        t["dtype"] = rng.choice(ODD_DTYPES + list(DTYPES))
    elif m == "huge":
        t["shape"] = rng.choice([[2 ** 63], [2 ** 64], [2 ** 32, 2 ** 32], [2 ** 62, 4], [2 ** 40, 2 ** 30],
                                 [2 ** 61, 0], [0, 2 ** 64 - 1], [3, 2 ** 63 // 3 + 1]])
    elif m == "zero":
        t["shape"] = [0] + t["shape"]
        t["data_offsets"] = [t["data_offsets"][0], t["data_offsets"][0]]
    elif m == "neg":
        t["shape"] = rng.choice([[-1], [1.0], ["2"], [None], [True], 5])
    elif m == "dup":
        c.members.append((k, json.loads(json.dumps(t))))
    elif m == "meta":
        v = rng.choice([{"a": 1}, {"a": None}, {"a": ["x"]}, {"a": {"b": "c"}}, {}, [], "x", None,
                        {"a": "\u0000"}, {"\u0000": "v"}, {"a": "b", "a ": "c"}, {"k": "\U0001f600"}])
        c.members.insert(rng.randint(0, len(c.members)), ("__metadata__", v))
        if rng.random() < 0.2:
            c.members.append(("__metadata__", {"x": "y"}))
    elif m == "ws":
        c.lead_ws = rng.choice([" ", "\n", "\t", "\r\n ", "\ufeff", "\x0c", "\x00"])
        c.pad = rng.choice([b" " * 7, b"\n", b"\x00", b"\t", b" \x00", b"x"])
    elif m == "name":
        c.members.append((rng.choice(NAMES), {"dtype": "U8", "shape": [1],
                                              "data_offsets": [c.data_len, c.data_len + 1]}))
        c.data_len += 1
    elif m == "cut":
        c.cut = rng.randint(1, 16) if rng.random() < 0.7 else len(c.encode()) - rng.randint(0, 9)
    elif m == "hlen":
        n = len(c.encode()) - 8 - c.data_len
        # Zero, one, just short, just past the header, past the file, past any limit.
        c.hlen_delta = rng.choice([-n, 1 - n, -1, 1, -7, 8, c.data_len, c.data_len + 1, 2 ** 20,
                                   100_000_000 - n, 2 ** 63, 2 ** 64 - 1 - n])
    elif m == "extra":
        t[rng.choice(["foo", "dtype ", "offsets"])] = 1
    elif m == "missing":
        del t[rng.choice(["dtype", "shape", "data_offsets"])]
    elif m == "offsets":
        t["data_offsets"] = rng.choice([[0], [0, 1, 2], [5, 1], [-1, 0], [0.0, 1.0], "0,1", [2 ** 64, 2 ** 64]])
    elif m == "lex":
        # One value or key in another spelling: JSON parsers differ most on these.
        i = rng.choice(ts) if ts else None
        if i is not None and isinstance(t.get("shape"), list) and isinstance(t.get("data_offsets"), list):
            num = rng.choice(["1.0", "1e0", "01", "-0", "+1", "1E+0", "0x1", "1 ", "\u0031", "true"])
            dt = json.dumps(t.get("dtype"))
            if rng.random() < 0.3 and isinstance(t.get("dtype"), str) and t["dtype"]:
                dt = '"\\u%04x%s"' % (ord(t["dtype"][0]), t["dtype"][1:])
            key = rng.choice(['"shape"', '"\\u0073hape"', '"shape"'])
            shape = t["shape"] + [1] if t["shape"] else [1]
            body = '{"dtype":%s,%s:[%s],"data_offsets":%s}' % (
                dt, key, ",".join([num] + [str(d) for d in shape[1:]]) if shape[0] == 1 else ",".join(map(str, shape)),
                json.dumps(t["data_offsets"]))
            c.members[i] = (k, RawJSON(body))
    elif m == "bytes":
        c.byte_edits.append((rng.randint(0, 4096), bytes([rng.choice(b'{}[]":, 0123456789-.eE\\u\x00\xff\x7f')])
                             if rng.random() < 0.8 else b"", rng.choice([0, 1, 1, 2])))
    elif m == "raw":
        c.members.append(("r", RawJSON(rng.choice(["1", "[]", "{}", "null", "\"s\"", "1e400", "NaN"]))))


def gen_case(rng):
    c = valid_case(rng)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        try:
            mutate(c, rng)
        except (KeyError, TypeError, IndexError):
            pass  # an earlier mutation left a field this one cannot edit: that one stays

    return c


def ref_read(path):
    """(tensors, None) or (None, error): tensors is [(name, dtype, shape, nbytes)] sorted."""
    try:
        with safe_open(path, "numpy") as f:
            out = []
            for k in f.keys():
                s = f.get_slice(k)
                out.append((k, s.get_dtype(), list(s.get_shape()), sizeof(s.get_dtype(), s.get_shape())))
            f.metadata()
            return sorted(out), None
    except Exception as e:  # the reference says why in its exception
        return None, str(e).splitlines()[0] if str(e) else repr(e)


def weld_read(weld, path):
    r = subprocess.run([weld, "inspect", "--json", path], capture_output=True, timeout=60)
    if r.returncode != 0:
        return None, r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no message)"]
    j = json.loads(r.stdout)
    return sorted((t["name"], t["dtype"], t["shape"], t["bytes"]) for t in j["tensors"]), None


def has_dup_names(c):
    seen = set()
    for k, _ in c.members:
        if k in seen:
            return True
        seen.add(k)
    for k, v in c.members:
        if k == "__metadata__" and isinstance(v, dict) and len(set(v)) != len(v):
            return True
    return False


def has_nul(c):
    for k, v in c.members:
        if "\u0000" in k:
            return True
        if k == "__metadata__" and isinstance(v, dict):
            if any("\u0000" in a or (isinstance(b, str) and "\u0000" in b) for a, b in v.items()):
                return True
    return False


def bytes_overflow_i64(c):
    """A dimension, or the byte size, of some tensor at or above 2^63."""
    for _, v in c.members:
        if isinstance(v, dict) and isinstance(v.get("shape"), list) and isinstance(v.get("dtype"), str):
            n = DTYPES.get(v["dtype"], 8)
            for d in v["shape"]:
                if not isinstance(d, int) or isinstance(d, bool):
                    return False
                if d >= 2 ** 63:
                    return True
                n *= d
            if n // 8 >= 2 ** 63:
                return True
    return False


# Disagreements weld has on purpose (README.md, "Where weld and the reference
# readers differ"): each returns why, or None. Only weld refusing is excused.
EXPECTED_DEVIATIONS = [
    # Two tensors (or __metadata__ keys) with one name: the reference keeps the
    # last, weld refuses because which weights were meant is unknowable.
    lambda c, ref, wld: "duplicate names" if has_dup_names(c) and wld is None else None,
    # NUL in a name or metadata: weld's names are C strings everywhere.
    lambda c, ref, wld: "NUL in a name" if has_nul(c) and wld is None else None,
    # A dimension above 2^63-1 (README: "Also refused by every command"), even
    # in an empty tensor such as [0, 2^64-1], which the reference's header check
    # passes but no loader (torch, numpy) can index; and a shape whose byte size
    # does not fit int64.
    lambda c, ref, wld: "dimension or byte size past int64" if bytes_overflow_i64(c) and wld is None else None,
]


def compare(weld, path, c):
    """None when the readers agree (or differ as expected), else a description."""
    with open(path, "wb") as f:
        f.write(c.encode())
    ref, ref_err = ref_read(path)
    wld, wld_err = weld_read(weld, path)
    compare.last = (ref, wld)
    if (ref is None) == (wld is None) and ref == wld:
        return None
    for dev in EXPECTED_DEVIATIONS:
        if dev(c, ref, wld):
            return None
    return "reference: %s\nweld: %s" % (ref if ref is not None else "refused: " + ref_err,
                                        wld if wld is not None else "refused: " + " ".join(wld_err))


compare.last = (None, None)  # both readers' tensor lists for the last file compared


def tensor_bytes(path):
    """{name: bytes} of a safetensors file the reference accepted (so its offsets are valid)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    start = 8 + n
    return {k: blob[start + v["data_offsets"][0]:start + v["data_offsets"][1]]
            for k, v in json.loads(blob[8:start]).items() if k != "__metadata__"}


def compare_data(weld, path, out):
    """weld inspect shows no offsets: convert with --dtype keep and compare every
    tensor's bytes with the bytes the reference's offsets give. None when equal."""
    r = subprocess.run([weld, "convert", "--input", path, "--output", out, "--dtype", "keep", "--force",
                        "--quiet", "--device", "cpu", "--threads", "1"], capture_output=True, timeout=120)
    if r.returncode != 0:
        return "weld convert refused what inspect accepted: " + r.stderr.decode(errors="replace").strip()
    want = tensor_bytes(path)
    got = tensor_bytes(os.path.join(out, "model.safetensors"))
    if set(want) != set(got):
        return "weld convert wrote tensors %s, the input holds %s" % (sorted(got), sorted(want))
    bad = [k for k in want if want[k] != got[k]]
    return "bytes differ (data offsets read differently) for %s" % bad if bad else None


def shrink(weld, path, c):
    """Drop header members one at a time while the disagreement stays."""
    changed = True
    while changed:
        changed = False
        for i in range(len(c.members)):
            trial = Case()
            trial.__dict__.update(c.__dict__)
            trial.members = c.members[:i] + c.members[i + 1:]
            if compare(weld, path, trial):
                c, changed = trial, True
                break
    return c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weld")
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=0, help="run for this long instead of --cases")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--convert-every", type=int, default=10,
                    help="also convert every Nth file both accept, to check data offsets (0: never)")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    failures = 0
    n = 0
    refused = accepted = converted = 0
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.safetensors")
        while (time.time() - start < a.seconds) if a.seconds else n < a.cases:
            c = gen_case(rng)
            n += 1
            why = compare(a.weld, path, c)
            if why is None:
                ref, wld = compare.last
                refused += ref is None
                if ref and wld and a.convert_every and (accepted := accepted + 1) % a.convert_every == 0:
                    converted += 1
                    why = compare_data(a.weld, path, os.path.join(tmp, "out"))
                    if why:
                        failures += 1
                        print("DATA DISAGREEMENT (seed %d, case %d)\n%s\nfile hex: %s\n"
                              % (seed, n, why, c.encode().hex()))
                continue
            failures += 1
            c = shrink(a.weld, path, c)
            why = compare(a.weld, path, c)
            print("DISAGREEMENT (seed %d, case %d, mutations %s)\n%s\nfile hex: %s\n"
                  % (seed, n, sorted(c.tags), why, c.header_hex()))
            if failures >= 5:
                break
    print("st_diff_fuzz: seed %d: %d cases (%d refused by the reference, %d converted) in %.1fs, "
          "%d disagreements" % (seed, n, refused, converted, time.time() - start, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
