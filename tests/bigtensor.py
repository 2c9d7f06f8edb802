#!/usr/bin/env python3
"""A tensor of more than 2^31 elements, and outputs of more than 2^32 bytes.

    bigtensor.py make DIR            DIR/model.safetensors (sparse) and DIR/config.json
    bigtensor.py check-st OUT        OUT (weld convert of DIR to bf16 safetensors) is right
    bigtensor.py check-bin OUT       the same for --pytorch-bin

The input holds "model.embed_tokens.weight", F32 [524289, 4096] (2^31 + 4096
elements, 8 GiB), zeros but for a few marker values at elements either side
of 2^30 and 2^31, and after it "model.norm.weight", 8 F32 values: one sparse
file that costs a few pages of disk. Converted to bf16 the big tensor is
4 GiB + 8 KiB, so the small one lands past byte 2^32 of the output.

The checks know every expected byte: the header (dtype, shape,
data_offsets), the markers and the small tensor in place, zeros around the
markers, and the CRC-32s in weld.json against zlib's over the expected
bytes (streamed, so nothing here trusts weld's crc32_combine). For the
.bin: the zip64 records as torch's miniz writes them (local extra fields,
24-byte data descriptors, central directory, zip64 end records, the
classic end record clamped), the pickle's shapes and storage sizes, and the
CRCs against the file itself. Python's standard library only; exits 1 with
every failure listed.
"""

import json
import os
import pickle
import struct
import sys
import zipfile
import zlib

ROWS, COLS = 524289, 4096
N = ROWS * COLS  # 2^31 + 4096
BIG, SMALL = "model.embed_tokens.weight", "model.norm.weight"

# Marker element -> (fp32 bits, the bf16 bits weld must write: round to
# nearest even, overflow to inf, NaN -> 0x7fc0).
MARKERS = {
    0: (0x3F808000, 0x3F80),              # tie, even: down
    (1 << 30) - 1: (0x3F818000, 0x3F82),  # tie, odd: up
    1 << 30: (0xC0490FDB, 0xC049),        # -pi
    (1 << 31) - 1: (0x477FE000, 0x4780),  # 65504 rounds up
    1 << 31: (0x7F7FFFFF, 0x7F80),        # largest finite fp32 -> inf
    N - 1: (0x7FC00001, 0x7FC0),          # NaN
}
# The small tensor: fp32 bits -> bf16 bits.
SMALL_VALUES = [
    (0x3F800000, 0x3F80),  # 1.0
    (0xC0200000, 0xC020),  # -2.5
    (0x3DCCCCCD, 0x3DCD),  # 0.1
    (0x7F61B1E6, 0x7F62),  # 3e38
    (0x80000000, 0x8000),  # -0.0
    (0x000116C2, 0x0001),  # 1e-40, subnormal
    (0x477FF000, 0x4780),  # 65520
    (0xFFC12345, 0x7FC0),  # NaN with a payload
]

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def safetensors_header(tensors):
    """The header the safetensors writer makes: compact JSON, padded to 8 with spaces."""
    h = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, dtype, shape, nbytes in tensors:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    text = json.dumps(h, separators=(",", ":")).encode()
    return text + b" " * ((8 - len(text) % 8) % 8)


def make(d):
    os.makedirs(d, exist_ok=True)
    h = safetensors_header([(BIG, "F32", [ROWS, COLS], 4 * N), (SMALL, "F32", [len(SMALL_VALUES)], 4 * len(SMALL_VALUES))])
    start = 8 + len(h)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for e, (bits, _) in MARKERS.items():
            f.seek(start + 4 * e)
            f.write(struct.pack("<I", bits))
        f.seek(start + 4 * N)
        f.write(struct.pack("<%dI" % len(SMALL_VALUES), *[b for b, _ in SMALL_VALUES]))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["BigForTest"], "model_type": "bigtest", "torch_dtype": "float32"}, f)


def big_pieces():
    """The big tensor's bf16 bytes, in order: (zero run length, None) and (None, marker bytes)."""
    at = 0
    for e in sorted(MARKERS):
        if 2 * e > at:
            yield 2 * e - at, None
        yield None, struct.pack("<H", MARKERS[e][1])
        at = 2 * e + 2
    if 2 * N > at:
        yield 2 * N - at, None


ZEROS = bytes(1 << 26)


def crc_of_zeros(n, crc):
    while n:
        k = min(n, len(ZEROS))
        crc = zlib.crc32(memoryview(ZEROS)[:k], crc)
        n -= k
    return crc


def big_crc(crc):
    """zlib's CRC-32 of the big tensor's bf16 bytes, continuing from CRC."""
    for zeros, data in big_pieces():
        crc = crc_of_zeros(zeros, crc) if data is None else zlib.crc32(data, crc)
    return crc


def small_bytes():
    return struct.pack("<%dH" % len(SMALL_VALUES), *[b for _, b in SMALL_VALUES])


def read_at(f, off, n):
    f.seek(off)
    return f.read(n)


def check_big_bytes(f, data_off):
    """The markers in place at DATA_OFF, each with zeros next to it."""
    for e, (_, bits) in sorted(MARKERS.items()):
        got = read_at(f, data_off + 2 * e, 2)
        check(got == struct.pack("<H", bits), "element %d: bf16 %s, want %04x" % (e, got.hex(), bits))
        for n in (e - 1, e + 1):
            if 0 <= n < N and n not in MARKERS:
                check(read_at(f, data_off + 2 * n, 2) == b"\0\0", "element %d next to a marker is not 0" % n)


def check_manifest(out, weights, size, offsets, crcs, file_crc):
    m = json.load(open(os.path.join(out, "weld.json")))
    fe = m["files"][0]
    check(fe["name"] == weights and fe["size"] == size, "weld.json files[0]: %s" % fe)
    check(fe["crc32"] == file_crc, "weld.json file crc32 %s, zlib says %s" % (fe["crc32"], file_crc))
    want = [
        {"name": BIG, "dtype": "BF16", "shape": [ROWS, COLS], "offset": offsets[0], "bytes": 2 * N, "crc32": crcs[0]},
        {"name": SMALL, "dtype": "BF16", "shape": [len(SMALL_VALUES)], "offset": offsets[1],
         "bytes": 2 * len(SMALL_VALUES), "crc32": crcs[1]},
    ]
    check(m["tensors"] == want, "weld.json tensors: %s, want %s" % (m["tensors"], want))


def torch_or_none():
    """torch when this python has it (the checks below then also read the output with it)."""
    try:
        import torch
        return torch
    except ImportError:
        print("bigtensor: torch not importable: outputs not read back with torch")
        return None


def check_torch_values(name, shape, dtype, row, small):
    """A big tensor of SHAPE and DTYPE (a string), ROW(r) one of its rows as a torch
    tensor, and SMALL: what torch read from an output holds the expected bits."""
    import torch
    check(tuple(shape) == (ROWS, COLS) and dtype in ("BF16", "torch.bfloat16"), "%s: %s %s" % (name, shape, dtype))
    got = [row(e // COLS).reshape(-1).view(torch.int16)[e % COLS].item() & 0xFFFF for e in sorted(MARKERS)]
    check(got == [MARKERS[e][1] for e in sorted(MARKERS)], "%s: markers %s" % (name, [hex(v) for v in got]))
    got = [v & 0xFFFF for v in small.view(torch.int16).tolist()]
    check(got == [b for _, b in SMALL_VALUES], "%s: %s %s" % (name, SMALL, [hex(v) for v in got]))


def check_st(out):
    path = os.path.join(out, "model.safetensors")
    h = safetensors_header([(BIG, "BF16", [ROWS, COLS], 2 * N), (SMALL, "BF16", [len(SMALL_VALUES)], 2 * len(SMALL_VALUES))])
    start = 8 + len(h)
    size = start + 2 * N + 2 * len(SMALL_VALUES)
    check(os.path.getsize(path) == size, "%s: %d bytes, want %d" % (path, os.path.getsize(path), size))
    with open(path, "rb") as f:
        head = f.read(start)
        check(head == struct.pack("<Q", len(h)) + h, "header %r, want %r" % (head[:400], h[:400]))
        check_big_bytes(f, start)
        got = read_at(f, start + 2 * N, 2 * len(SMALL_VALUES))
        check(got == small_bytes(), "%s at byte %d: %s, want %s" % (SMALL, start + 2 * N, got.hex(), small_bytes().hex()))
    whole = zlib.crc32(small_bytes(), big_crc(zlib.crc32(struct.pack("<Q", len(h)) + h)))
    check_manifest(out, "model.safetensors", size, [start, start + 2 * N], [big_crc(0), zlib.crc32(small_bytes())],
                   whole)
    torch = torch_or_none()
    if torch:
        try:
            from safetensors import safe_open
        except ImportError:
            return
        with safe_open(path, framework="pt") as f:  # a slice reads only its rows
            sl = f.get_slice(BIG)
            check_torch_values("safe_open", sl.get_shape(), sl.get_dtype(), lambda r: sl[r:r + 1], f.get_tensor(SMALL))


class Stub:
    """Stands for any global the pickle names; records how it was called."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        return (self.name, args)


class StubUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return Stub(module + "." + name)

    def persistent_load(self, pid):
        return ("storage", pid[1].name, pid[2], pid[3], pid[4])


def check_pickle(z):
    d = StubUnpickler(z.open("pytorch_model/data.pkl")).load()
    check(list(d) == [BIG, SMALL], "data.pkl keys %s" % list(d))
    want = {
        BIG: ("0", N, (ROWS, COLS), (COLS, 1)),
        SMALL: ("1", len(SMALL_VALUES), (len(SMALL_VALUES),), (1,)),
    }
    for name, (key, numel, shape, stride) in want.items():
        fn, args = d[name]
        storage = ("storage", "torch.BFloat16Storage", key, "cpu", numel)
        check(fn == "torch._utils._rebuild_tensor_v2" and args[0] == storage and args[1:4] == (0, shape, stride),
              "data.pkl %s: %s %s" % (name, fn, args[:4]))


def u16(b, o):
    return struct.unpack_from("<H", b, o)[0]


def check_zip64_record(f, info, data_off):
    """The local header, its zip64 extra field and its data descriptor, as miniz writes them."""
    name = info.filename.encode()
    local = read_at(f, info.header_offset, 30 + len(name) + 4 + 28)
    check(local[:4] == b"PK\3\4" and u16(local, 6) == 0x0808 and local[30:30 + len(name)] == name,
          "%s: local header %s" % (info.filename, local[:30].hex()))
    extra = local[30 + len(name):]
    z64 = b""
    if info.file_size >= 0xFFFFFFFF:
        z64 += struct.pack("<QQ", info.file_size, 0)  # miniz: the compressed size is not known yet
    if info.header_offset >= 0xFFFFFFFF:
        z64 += struct.pack("<Q", info.header_offset)
    want = struct.pack("<HH", 1, len(z64)) + z64 + b"FB"
    check(extra.startswith(want), "%s: local extra %s, want %s..." % (info.filename, extra.hex(), want.hex()))
    check(data_off % 64 == 0, "%s: data at %d, not 64-aligned" % (info.filename, data_off))
    desc = read_at(f, data_off + info.file_size, 24)
    want = struct.pack("<IIQQ", 0x08074B50, info.CRC, info.file_size, info.file_size)
    check(desc == want, "%s: data descriptor %s, want %s" % (info.filename, desc.hex(), want.hex()))


def check_end_records(f, size, z):
    """Zip64 end record, its locator and the classic end record with its fields clamped."""
    tail = read_at(f, size - 98, 98)
    sig, _, _, _, _, _, n1, n2, cd_size, cd_off = struct.unpack_from("<IQHHIIQQQQ", tail, 0)
    check(sig == 0x06064B50 and n1 == n2 == len(z.infolist()) and cd_off + cd_size == size - 98,
          "zip64 end record %s" % tail[:56].hex())
    check(cd_off > 0xFFFFFFFF, "central directory at %d, not past 2^32" % cd_off)
    sig, _, eocd64, _ = struct.unpack_from("<IIQI", tail, 56)
    check(sig == 0x07064B50 and eocd64 == size - 98, "zip64 locator %s" % tail[56:76].hex())
    want = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n1, n1, cd_size, 0xFFFFFFFF, 0)
    check(tail[76:] == want, "end record %s, want %s" % (tail[76:].hex(), want.hex()))


def file_crc(path):
    crc = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 24)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def check_bin(out):
    path = os.path.join(out, "pytorch_model.bin")
    size = os.path.getsize(path)
    big, small = big_crc(0), zlib.crc32(small_bytes())
    z = zipfile.ZipFile(path)
    names = [i.filename for i in z.infolist()]
    want = ["data.pkl", ".format_version", ".storage_alignment", "byteorder", "data/0", "data/1", "version",
            ".data/serialization_id"]
    check(names == ["pytorch_model/" + n for n in want], "records %s" % names)
    check_pickle(z)
    offsets = []
    with open(path, "rb") as f:
        for rec, crc, n in (("data/0", big, 2 * N), ("data/1", small, 2 * len(SMALL_VALUES))):
            info = z.getinfo("pytorch_model/" + rec)
            name_len, extra_len = struct.unpack("<HH", read_at(f, info.header_offset + 26, 4))
            data_off = info.header_offset + 30 + name_len + extra_len
            offsets.append(data_off)
            check(info.file_size == info.compress_size == n and info.CRC == crc,
                  "%s: %d bytes, crc %08x; want %d, %08x" % (rec, info.file_size, info.CRC, n, crc))
            check_zip64_record(f, info, data_off)
        check(offsets[1] > 0xFFFFFFFF, "data/1 at %d, not past 2^32" % offsets[1])
        check_big_bytes(f, offsets[0])
        check(read_at(f, offsets[1], 2 * len(SMALL_VALUES)) == small_bytes(), "data/1 bytes")
        check_end_records(f, size, z)
    check(z.read("pytorch_model/data/1") == small_bytes(), "data/1 through zipfile")
    check_manifest(out, "pytorch_model.bin", size, offsets, [big, small], file_crc(path))
    torch = torch_or_none()
    if torch:
        d = torch.load(path, mmap=True, weights_only=True)
        check(list(d) == [BIG, SMALL], "torch.load: keys %s" % list(d))
        big = d[BIG]  # mmap'ed: indexing reads only those pages
        check_torch_values("torch.load", big.shape, str(big.dtype), lambda r: big[r], d[SMALL])


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check-st", "check-bin"):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    {"make": make, "check-st": check_st, "check-bin": check_bin}[sys.argv[1]](sys.argv[2])
    for f in failures:
        print("FAIL: %s" % f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
