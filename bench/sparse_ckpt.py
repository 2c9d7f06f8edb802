"""Shape-only checkpoints as sparse files, for scripts/bench-scale.

Every file is what the real writer would write, byte for byte, except that the
tensor data are holes (they read as zeros, and every CRC-32 is the CRC of
those zeros, so a reader that checks them accepts the file):

- torch.save zip files are written by `write_torch_zip`, a re-implementation
  of torch's PyTorchStreamWriter (miniz, stored entries with data
  descriptors, the 'FB' padding extra that aligns data to 64 bytes, ZIP64
  extras and end records, .format_version / .storage_alignment / byteorder /
  version / .data/serialization_id records), and the pickle by torch's own
  protocol-2 scheme (persistent ids ('storage', <Storage class>, key, 'cpu',
  numel), `_rebuild_tensor_v2`, `_rebuild_from_type_v2` for tensors with
  attributes). `selfcheck()` rewrites real DeepSpeed files (the Trainer
  fixtures) through it and compares them with the originals byte for byte,
  and compares a >4 GiB ZIP64 layout with torch's own skip_data output.
- DeepSpeed ZeRO-3 and ZeRO-2 checkpoints are built from the objects of a
  real DeepSpeed 0.19.8 Trainer checkpoint (ZeroStageEnum, LossScaler,
  fragment_address, param_groups, ds_config...) with the model's shapes
  substituted, partitioned as DeepSpeed partitions (stage 3: sub-groups of
  sub_group_size=1e9 partition elements, ceil(n/W) slices; stage 1/2: one
  flat group per param group padded to a multiple of 2W, padding stripped
  from the last rank's saved partition, param_slice_mappings).
- HF sharded safetensors: bf16 shards of at most 5 GB and the index, as
  save_pretrained writes them.

Files of one checkpoint that differ only in their zip prefix (every ZeRO-3
rank's model states, every rank's optimizer states of a given size) are
rendered once and written with the prefix substituted.
"""
import collections
import ctypes
import ctypes.util
import json
import os
import pickle
import struct
import zlib

import torch

# ---------------------------------------------------------------- CRC-32 of holes

_z = ctypes.CDLL(ctypes.util.find_library("z"))
_z.crc32_combine64.argtypes = [ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int64]
_z.crc32_combine64.restype = ctypes.c_ulong
_pow2_zeros = [zlib.crc32(b"\0")]  # CRC of 2^k zero bytes


def crc32_zeros(n):
    """zlib's CRC-32 of N zero bytes, in O(log N)."""
    crc, k = 0, 0
    while n:
        while len(_pow2_zeros) <= k:
            c = _pow2_zeros[-1]
            _pow2_zeros.append(_z.crc32_combine64(c, c, 1 << (len(_pow2_zeros) - 1)))
        if n & 1:
            crc = _z.crc32_combine64(crc, _pow2_zeros[k], 1 << k)
        n >>= 1
        k += 1
    return crc


# ---------------------------------------------------------------- stand-in tensors

_STORAGE = {torch.float32: torch.FloatStorage, torch.bfloat16: torch.BFloat16Storage,
            torch.float16: torch.HalfStorage, torch.int64: torch.LongStorage,
            torch.uint8: torch.ByteStorage, torch.bool: torch.BoolStorage,
            torch.float64: torch.DoubleStorage, torch.int32: torch.IntStorage}


class Storage:
    """A storage of NUMEL elements of DTYPE; DATA its bytes, or None for a hole."""
    __slots__ = ("dtype", "numel", "data")

    def __init__(self, dtype, numel, data=None):
        self.dtype, self.numel, self.data = dtype, numel, data

    @property
    def nbytes(self):
        return self.numel * self.dtype.itemsize


class T:
    """What torch.save pickles for a tensor, without the tensor."""
    __slots__ = ("storage", "offset", "shape", "stride", "requires_grad", "state")

    def __init__(self, storage, shape, offset=0, stride=None, requires_grad=False, state=None):
        self.storage, self.offset, self.shape = storage, offset, tuple(shape)
        if stride is None:
            stride, acc = [], 1
            for d in reversed(self.shape):
                stride.append(acc)
                acc *= d
            stride = tuple(reversed(stride))
        self.stride, self.requires_grad, self.state = tuple(stride), requires_grad, state

    def __reduce_ex__(self, proto):
        args = (self.storage, self.offset, self.shape, self.stride, self.requires_grad,
                collections.OrderedDict())
        if self.state:
            return (torch._tensor._rebuild_from_type_v2,
                    (torch._utils._rebuild_tensor_v2, torch.Tensor, args, self.state))
        return (torch._utils._rebuild_tensor_v2, args)


def flat(dtype, numel, **kw):
    """A 1-D tensor owning a fresh hole storage of NUMEL elements."""
    return T(Storage(dtype, numel), (numel,), **kw)


def dumps(obj):
    """torch.save's pickle of OBJ (protocol 2) and its storages in key order."""
    import io
    ids, storages = {}, []

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = ids.get(id(o))
                if key is None:
                    key = ids[id(o)] = str(len(ids))
                    storages.append(o)
                return ("storage", _STORAGE[o.dtype], key, "cpu", o.numel)
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(obj)
    return buf.getvalue(), storages


# ---------------------------------------------------------------- torch's zip writer

M64 = (1 << 64) - 1
U32 = 0xFFFFFFFF


def _hash_bytes(b, seed=0xC70F6907):
    """libstdc++'s std::hash<std::string> (_Hash_bytes, 64-bit)."""
    mul = (0xC6A4A793 << 32) + 0x5BD1E995
    n = len(b)
    h = (seed ^ (n * mul)) & M64
    aligned = n & ~7
    for i in range(0, aligned, 8):
        d = int.from_bytes(b[i:i + 8], "little")
        d = (d * mul) & M64
        d = ((d ^ (d >> 47)) * mul) & M64
        h = ((h ^ d) * mul) & M64
    if n & 7:
        h = ((h ^ int.from_bytes(b[aligned:], "little")) * mul) & M64
    h = ((h ^ (h >> 47)) * mul) & M64
    return h ^ (h >> 47)


def _hash_combine(seed, v):
    """c10::hash_combine."""
    return (seed ^ ((v + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & M64)) & M64


class _Layout:
    """The bytes of a torch zip, as segments: bytes, or an int (a hole of that many bytes)."""

    def __init__(self, prefix, records):
        self.segments, central = [], []
        pos = 0
        for name, size, crc, data in records:
            full = (prefix + "/" + name).encode()
            big_s, big_p = size >= U32, pos >= U32
            z64 = b""
            if big_s or big_p:
                body = (struct.pack("<QQ", size, 0) if big_s else b"") + (struct.pack("<Q", pos) if big_p else b"")
                z64 = struct.pack("<HH", 1, len(body)) + body
            start = pos + 30 + len(full) + 4 + (4 + 16 * big_s + 8 * big_p if (big_s or big_p) else 0)
            pad = (64 - start % 64) % 64
            extra = z64 + b"FB" + struct.pack("<H", pad) + b"Z" * pad
            flags = 0x0808 if size else 0x0800
            local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0, len(full), len(extra)) + full + extra
            self.segments.append(local)
            self.segments.append(data if data is not None else size)
            if size:
                if z64:
                    self.segments.append(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
                else:
                    self.segments.append(struct.pack("<IIII", 0x08074B50, crc, size, size))
            cz64 = b""
            if big_s or big_p:
                body = (struct.pack("<QQ", size, size) if big_s else b"") + (struct.pack("<Q", pos) if big_p else b"")
                cz64 = struct.pack("<HH", 1, len(body)) + body
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, flags, 0, 0, 0, crc,
                                       min(size, U32), min(size, U32), len(full), len(cz64), 0, 0, 0, 0,
                                       min(pos, U32)) + full + cz64)
            pos += len(local) + size + (len(self.segments[-1]) if size else 0)
        cd = b"".join(central)
        n = len(records)
        eocd64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x002D, 0, 0, n, n, len(cd), pos)
        loc = struct.pack("<IIQI", 0x07064B50, 0, pos + len(cd), 1)
        eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), min(len(cd), U32),
                           min(pos, U32), 0)
        self.segments += [cd, eocd64, loc, eocd]

    def write(self, path):
        with open(path, "wb", buffering=1 << 20) as f:
            for s in self.segments:
                if isinstance(s, int):
                    f.seek(s, os.SEEK_CUR)
                else:
                    f.write(s)
            f.truncate()  # a hole at the very end (never: the end records follow) is kept by the size

    def size(self):
        return sum(s if isinstance(s, int) else len(s) for s in self.segments)


# libstdc++'s __prime_list (bucket counts of std::unordered_set), up to a million buckets.
_PRIMES = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
           103, 109, 113, 127, 137, 139, 149, 157, 167, 179, 193, 199, 211, 227, 241, 257, 277, 293, 313,
           337, 359, 383, 409, 439, 467, 503, 541, 577, 619, 661, 709, 761, 823, 887, 953, 1031, 1109, 1193,
           1289, 1381, 1493, 1613, 1741, 1879, 2029, 2179, 2357, 2549, 2753, 2971, 3209, 3469, 3739, 4027,
           4349, 4703, 5087, 5503, 5953, 6427, 6949, 7517, 8123, 8783, 9497, 10273, 11113, 12011, 12983,
           14033, 15173, 16411, 17749, 19183, 20753, 22447, 24281, 26267, 28411, 30727, 33223, 35933, 38873,
           42043, 45481, 49201, 53201, 57557, 62233, 67307, 72817, 78779, 85229, 92203, 99733, 107897,
           116731, 126271, 136607, 147793, 159871, 172933, 187091, 202409, 218971, 236897, 256279, 277261,
           299951, 324503, 351061, 379787, 410857, 444487, 480881, 520241, 562841, 608903, 658753, 712697,
           771049, 834181, 902483, 976369, 1056323]
_FAST_BKT = [2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13]


def _unordered_set_order(names):
    """The iteration order of a libstdc++ std::unordered_set<std::string> after inserting NAMES in turn
    (torch's files_written_, over which the serialization id's name hash runs)."""
    import bisect
    codes = {n: _hash_bytes(n.encode()) for n in names}
    nxt = {None: None}  # None is _M_before_begin
    state = {"nb": 1, "next_resize": 0}
    buckets = [False]  # bucket -> node before its first node; False when empty

    def next_bkt(n):
        if n < len(_FAST_BKT):
            if n == 0:
                return 1
            state["next_resize"] = _FAST_BKT[n]
            return _FAST_BKT[n]
        p = _PRIMES[bisect.bisect_left(_PRIMES, n, 6)]
        state["next_resize"] = p
        return p

    def rehash(n):
        new = [False] * n
        p = nxt[None]
        nxt[None] = None
        bbegin = 0
        while p is not None:
            after = nxt[p]
            b = codes[p] % n
            if new[b] is False:
                nxt[p] = nxt[None]
                nxt[None] = p
                new[b] = None
                if nxt[p] is not None:
                    new[bbegin] = p
                bbegin = b
            else:
                nxt[p] = nxt[new[b]]
                nxt[new[b]] = p
            p = after
        buckets[:] = new
        state["nb"] = n

    for count, name in enumerate(names):
        if count + 1 > state["next_resize"]:
            min_bkts = max(count + 1, 0 if state["next_resize"] else 11)
            if min_bkts >= state["nb"]:
                rehash(next_bkt(max(min_bkts + 1, state["nb"] * 2)))
            else:
                state["next_resize"] = state["nb"]
        b = codes[name] % state["nb"]
        if buckets[b] is not False:
            nxt[name] = nxt[buckets[b]]
            nxt[buckets[b]] = name
        else:
            nxt[name] = nxt[None]
            nxt[None] = name
            if nxt[name] is not None:
                buckets[codes[nxt[name]] % state["nb"]] = name
            buckets[b] = None
    order, p = [], nxt[None]
    while p is not None:
        order.append(p)
        p = nxt[p]
    return order


def torch_zip_records(pkl, storages):
    """The records torch.save (torch >= 2.7) writes for pickle PKL and STORAGES: (name, size, crc, data)."""
    recs = [("data.pkl", pkl), (".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little")]
    out = [(n, len(b), zlib.crc32(b), b) for n, b in recs]
    for i, s in enumerate(storages):
        n = s.nbytes
        crc = zlib.crc32(s.data) if s.data is not None else crc32_zeros(n)
        out.append((f"data/{i}", n, crc, s.data))
    out.append(("version", 2, zlib.crc32(b"3\n"), b"3\n"))
    # PyTorchStreamWriter::writeSerializationId: the names hash over files_written_ (an unordered_set),
    # the CRC hash over every data descriptor written (none for empty records).
    names, crcs = 0, 0
    for name, size, crc, _ in out:
        if size:
            crcs = _hash_combine(crcs, crc)
    for name in _unordered_set_order([r[0] for r in out]):
        names = _hash_combine(names, _hash_bytes(name.encode()))
    sid = f"{names:020d}{crcs:020d}".encode()
    out.append((".data/serialization_id", len(sid), zlib.crc32(sid), sid))
    return out


class TorchFile:
    """A torch.save file of OBJ, renderable under any prefix (the file's base name)."""

    def __init__(self, obj):
        self.pkl, self.storages = dumps(obj)
        self.records = torch_zip_records(self.pkl, self.storages)
        self._cache = {}

    def layout(self, prefix):
        return _Layout(prefix, self.records)

    def write(self, path):
        """Write as PATH, whose base name without extension is the prefix, as torch.save(obj, PATH) does."""
        prefix = os.path.splitext(os.path.basename(path))[0]
        # Same-length prefixes give the same layout but for the names: render one, substitute the rest.
        seg = self._cache.get(len(prefix))
        if seg is None:
            lay = self.layout(prefix)
            seg = self._cache[len(prefix)] = (prefix.encode(), lay.segments)
        old, segs = seg
        new = prefix.encode()
        with open(path, "wb", buffering=1 << 20) as f:
            for s in segs:
                if isinstance(s, int):
                    f.seek(s, os.SEEK_CUR)
                elif old == new or old not in s:
                    f.write(s)
                else:
                    f.write(s.replace(old + b"/", new + b"/"))
            f.truncate()


# ---------------------------------------------------------------- models

def llama_shapes(name):
    """Llama-3 parameter shapes in module order (untied head)."""
    cfg = {
        "8B": dict(h=4096, L=32, kv=1024, ff=14336),
        "70B": dict(h=8192, L=80, kv=1024, ff=28672),
        "405B": dict(h=16384, L=126, kv=1024, ff=53248),
        # for tests: a tiny model of the same layout
        "tiny": dict(h=64, L=2, kv=16, ff=96),
    }[name]
    h, L, kv, ff = cfg["h"], cfg["L"], cfg["kv"], cfg["ff"]
    vocab = 128256 if name != "tiny" else 509
    out = [("model.embed_tokens.weight", (vocab, h))]
    for i in range(L):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)), (p + "self_attn.o_proj.weight", (h, h)),
                (p + "mlp.gate_proj.weight", (ff, h)), (p + "mlp.up_proj.weight", (ff, h)),
                (p + "mlp.down_proj.weight", (h, ff)), (p + "input_layernorm.weight", (h,)),
                (p + "post_attention_layernorm.weight", (h,))]
    out += [("model.norm.weight", (h,)), ("lm_head.weight", (vocab, h))]
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
              "intermediate_size": ff, "num_hidden_layers": L, "num_attention_heads": h // 128 if h >= 128 else 4,
              "num_key_value_heads": kv // 128 if h >= 128 else 1, "head_dim": 128 if h >= 128 else 16,
              "vocab_size": vocab, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
              "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
              "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu"}
    return out, config


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _no_decay(name):
    return name.endswith("norm.weight") or name.endswith(".bias")


# ---------------------------------------------------------------- DeepSpeed

def load_templates(fixtures):
    """The objects of real DeepSpeed 0.19.8 Trainer checkpoints (ZeRO-3 and ZeRO-2), rank 0."""
    z3 = os.path.join(fixtures, "z3_gather/checkpoint-1/global_step1")
    z2 = os.path.join(fixtures, "z2_untied/checkpoint-2/global_step2")
    ld = lambda p: torch.load(p, map_location="cpu", weights_only=False)
    return {"z3_model": ld(os.path.join(z3, "zero_pp_rank_0_mp_rank_00_model_states.pt")),
            "z3_optim": ld(os.path.join(z3, "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")),
            "z2_model": ld(os.path.join(z2, "mp_rank_00_model_states.pt")),
            "z2_optim": ld(os.path.join(z2, "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"))}


def _groups(shapes):
    """The Trainer's two param groups (weight decay, none) as lists of (name, shape)."""
    return [[s for s in shapes if not _no_decay(s[0])], [s for s in shapes if _no_decay(s[0])]]


def _state_dict(items, shapes):
    """An OrderedDict as module.state_dict() returns it: with the _metadata of every submodule."""
    sd = collections.OrderedDict(items)
    md = collections.OrderedDict([("", {"version": 1})])
    for name, _ in shapes:
        parts = name.split(".")[:-1]
        for k in range(1, len(parts) + 1):
            mod = ".".join(parts[:k])
            if mod not in md:
                md[mod] = {"version": 1}
            # modules without parameters, where the module tree has them
            if mod.endswith(".down_proj") and mod.replace("down_proj", "act_fn") not in md:
                md[mod.replace("down_proj", "act_fn")] = {"version": 1}
        if name == "model.norm.weight":
            md["model.rotary_emb"] = {"version": 1}
    sd._metadata = md
    return sd


def _value(name, n):
    """The deterministic fp32 values of parameter NAME (only for the small cross-checked checkpoints)."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(n, generator=g)


def _adam_state(exp_numels):
    return {i: {"step": T(Storage(torch.float32, 1, struct.pack("<f", 100.0)), ()),
                "exp_avg": flat(torch.float32, n), "exp_avg_sq": flat(torch.float32, n)}
            for i, n in enumerate(exp_numels)}


def _param_groups(template_groups, params_per_group):
    out, k = [], 0
    for g, n in zip(template_groups, params_per_group):
        g = dict(g)  # shallow: the groups share their betas tuple, as torch's optimizer's do
        g["params"] = list(range(k, k + n))
        k += n
        out.append(g)
    return out


def _model_states(tpl, module, param_shapes, world, stage, steps):
    ms = dict(tpl)  # DeepSpeed's keys in DeepSpeed's order
    ms["module"] = module
    ms["param_shapes"] = param_shapes
    ms["frozen_param_shapes"] = collections.OrderedDict()
    ms["frozen_param_fragments"] = collections.OrderedDict()
    ms["shared_params"] = {}
    ms["global_steps"] = steps
    ms["global_samples"] = steps * world * 2
    ms["dp_world_size"] = world
    cfg = dict(ms["ds_config"])
    cfg["train_batch_size"] = world * cfg["train_micro_batch_size_per_gpu"]
    zo = dict(cfg["zero_optimization"])
    if stage == 3:
        zo["stage3_gather_16bit_weights_on_model_save"] = False
    cfg["zero_optimization"] = zo
    ms["ds_config"] = cfg
    return ms, cfg


SUB_GROUP_SIZE = 1_000_000_000  # DeepSpeed's default zero_optimization.sub_group_size


def zero3(tpl, shapes, world, steps=100, fill=False, sub_group_size=SUB_GROUP_SIZE):
    """ZeRO-3: (model states, optim(r) giving rank r's optimizer states, elements of a rank's partitions).

    Without FILL every rank's files are the same objects (holes); with it the partitions hold _value()."""
    ds_ids = {name: i for i, (name, _) in enumerate(shapes)}
    # DeepSpeed's _create_fp16_sub_groups: sub-groups by partition numel.
    sub_groups, owners = [], []
    for gi, group in enumerate(_groups(shapes)):
        cur, acc = [], 0
        for i, (name, shape) in enumerate(group):
            cur.append((name, shape))
            acc += -(-numel(shape) // world)
            if acc >= sub_group_size or i == len(group) - 1:
                sub_groups.append(cur)
                owners.append(gi)
                cur, acc = [], 0
    module = _state_dict(((n, T(Storage(torch.bfloat16, 0), (0,))) for n, _ in shapes), shapes)
    param_shapes = [collections.OrderedDict((n, torch.Size(s)) for n, s in sg) for sg in sub_groups]
    ms, cfg = _model_states(tpl["z3_model"], module, param_shapes, world, 3, steps)
    part = [sum(-(-numel(s) // world) for _, s in sg) for sg in sub_groups]
    osd_t = tpl["z3_optim"]["optimizer_state_dict"]
    groups = _param_groups(osd_t["optimizer_state_dict"]["param_groups"], [owners.count(g) for g in range(2)])
    values = {n: _value(n, numel(s)) for n, s in shapes} if fill else None

    def optim(r):
        flats = []
        for n, sg in zip(part, sub_groups):
            data = None
            if fill:
                chunks = []
                for name, s in sg:
                    p = -(-numel(s) // world)
                    c = values[name][r * p:(r + 1) * p]
                    chunks.append(torch.cat([c, torch.zeros(p - len(c))]))
                data = torch.cat(chunks).numpy().tobytes()
            flats.append(T(Storage(torch.float32, n, data), (n,), requires_grad=True,
                           state={"ds_id": f"{ds_ids[sg[0][0]]}_{ds_ids[sg[-1][0]]}"}))
        osd = {"zero_stage": osd_t["zero_stage"], "loss_scaler": osd_t["loss_scaler"],
               "dynamic_loss_scale": osd_t["dynamic_loss_scale"], "overflow": osd_t["overflow"],
               "partition_count": world,
               "optimizer_state_dict": {"state": _adam_state(part), "param_groups": groups},
               "fp32_flat_groups": flats}
        assert list(osd) == list(osd_t), (list(osd), list(osd_t))
        return {"optimizer_state_dict": osd, "ds_config": cfg, "ds_version": tpl["z3_optim"]["ds_version"]}

    return ms, optim, part, values


def zero2(tpl, shapes, world, steps=100, fill=False):
    """ZeRO-2: (model states, optim(r) giving rank r's optimizer states, group sizes, values or None)."""
    from deepspeed.utils.tensor_fragment import fragment_address
    groups = _groups(shapes)
    align = 2 * world  # DeepSpeed's nccl_start_alignment_factor x dp size
    totals = [sum(numel(s) for _, s in g) for g in groups]
    padded = [-(-t // align) * align for t in totals]
    values = {n: _value(n, numel(s)) for n, s in shapes} if fill else None
    flat_data = [torch.cat([values[n] for n, _ in g] + [torch.zeros(padded[gi] - totals[gi])])
                 for gi, g in enumerate(groups)] if fill else None
    flats16 = [Storage(torch.bfloat16, p, flat_data[gi].to(torch.bfloat16).view(torch.int16).numpy().tobytes()
                       if fill else None) for gi, p in enumerate(padded)]
    where = {}
    for gi, g in enumerate(groups):
        off = 0
        for name, s in g:
            where[name] = (gi, off, s)
            off += numel(s)
    # The 16-bit module: views into each group's flat buffer, in module order.
    module = _state_dict(((n, T(flats16[where[n][0]], where[n][2], offset=where[n][1])) for n, _ in shapes), shapes)
    param_shapes = [collections.OrderedDict((n, torch.Size(s)) for n, s in g) for g in groups]
    ms, cfg = _model_states(tpl["z2_model"], module, param_shapes, world, 2, steps)
    osd_t = tpl["z2_optim"]["optimizer_state_dict"]
    part = [p // world for p in padded]
    pgroups = _param_groups(osd_t["base_optimizer_state"]["param_groups"], [1, 1])

    def optim(r):
        single, paddings, mappings = [], [], []
        for gi, g in enumerate(groups):
            P = part[gi]
            pad = padded[gi] - totals[gi] if r == world - 1 else 0
            data = flat_data[gi][r * P:(r + 1) * P].numpy().tobytes() if fill else None
            # Saved without its padding: a view of the partition's storage.
            single.append(T(Storage(torch.float32, P, data), (P - pad,)))
            paddings.append(pad)
            lo, hi = r * P, (r + 1) * P
            m, off = collections.OrderedDict(), 0
            for name, s in g:
                a, b = off, off + numel(s)
                if a < hi and b > lo:
                    m[name] = fragment_address(numel=min(b, hi) - max(a, lo), start=max(a, lo) - lo)
                off = b
            mappings.append(m)
        osd = dict(osd_t)  # DeepSpeed's keys in DeepSpeed's order
        osd.update({"base_optimizer_state": {"state": _adam_state(part), "param_groups": pgroups},
                    "single_partition_of_fp32_groups": single, "group_paddings": paddings,
                    "param_alignment_paddings": [[0] * len(g) for g in groups],
                    "partition_count": [world] * len(groups), "param_slice_mappings": mappings})
        return {"optimizer_state_dict": osd, "ds_config": cfg, "ds_version": tpl["z2_optim"]["ds_version"]}

    return ms, optim, totals, values


def write_zero(dirpath, tpl, model, stage, world, fill=False, log=None, **kw):
    """A Trainer checkpoint folder DIRPATH (config.json, latest, global_step100/) of MODEL at ZeRO STAGE, WORLD ranks.

    Returns (files, master bytes, values): the fp32 master bytes a converter must read, and the
    parameters' values (FILL) or None."""
    shapes, config = llama_shapes(model)
    tag = os.path.join(dirpath, "global_step100")
    os.makedirs(tag, exist_ok=True)
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if stage == 3:
        ms, optim, part, values = zero3(tpl, shapes, world, fill=fill, **kw)
        mf = TorchFile(ms)
        of = None if fill else TorchFile(optim(0))  # the same for every rank
        for r in range(world):
            mf.write(os.path.join(tag, f"zero_pp_rank_{r}_mp_rank_00_model_states.pt"))
            (of or TorchFile(optim(r))).write(os.path.join(tag, f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt"))
            if log and r % 1024 == 1023:
                log(f"{r + 1}/{world} ranks")
        files, masters = 2 * world, 4 * sum(part) * world
    else:
        ms, optim, totals, values = zero2(tpl, shapes, world, fill=fill)
        TorchFile(ms).write(os.path.join(tag, "mp_rank_00_model_states.pt"))
        for r in range(world):  # each rank's param_slice_mappings differ
            TorchFile(optim(r)).write(os.path.join(tag, f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt"))
            if log and r % 1024 == 1023:
                log(f"{r + 1}/{world} ranks")
        files, masters = 1 + world, 4 * sum(totals)
    with open(os.path.join(dirpath, "latest"), "w") as f:
        f.write("global_step100")
    return files, masters, values


# ---------------------------------------------------------------- HF sharded safetensors

def write_hf(dirpath, model, config, max_shard=5_000_000_000):
    """bf16 model-0000K-of-0000N.safetensors shards of at most MAX_SHARD bytes, the index, config.json."""
    shapes = llama_shapes(model)[0]
    os.makedirs(dirpath, exist_ok=True)
    shards, cur, size = [], [], 0
    for name, s in shapes:
        n = numel(s) * 2
        if cur and size + n > max_shard:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, s, n))
        size += n
    shards.append(cur)
    wmap, total = {}, 0
    for k, shard in enumerate(shards):
        fn = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        hdr, off = {"__metadata__": {"format": "pt"}}, 0
        for name, s, n in sorted(shard):
            hdr[name] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + n]}
            off += n
            wmap[name] = fn
        total += off
        h = json.dumps(hdr, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(dirpath, fn), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h)
            f.truncate(8 + len(h) + off)
    with open(os.path.join(dirpath, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(wmap.items()))}, f, indent=2)
    c = dict(config)
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    return len(shards)


# ---------------------------------------------------------------- self-check

def _as_standins(obj, memo, seen=None):
    """OBJ with every torch.Tensor replaced by a T on a Storage holding its bytes (shared objects stay shared)."""
    seen = {} if seen is None else seen
    if id(obj) in seen:
        return seen[id(obj)][1]
    if isinstance(obj, torch.Tensor):
        us = obj.untyped_storage()
        key = us._cdata
        st = memo.get(key)
        if st is None:
            data = bytes(us) if us.nbytes() else b""
            st = memo[key] = Storage(obj.dtype, us.nbytes() // obj.dtype.itemsize, data)
        out = T(st, obj.shape, obj.storage_offset(), obj.stride(), obj.requires_grad, dict(obj.__dict__) or None)
    elif isinstance(obj, torch.Size):
        out = obj
    elif isinstance(obj, collections.OrderedDict):
        out = collections.OrderedDict((k, _as_standins(v, memo, seen)) for k, v in obj.items())
        for k, v in obj.__dict__.items():  # a state dict's _metadata
            setattr(out, k, _as_standins(v, memo, seen))
    elif type(obj) is dict:
        out = {k: _as_standins(v, memo, seen) for k, v in obj.items()}
    elif type(obj) is list:
        out = [_as_standins(v, memo, seen) for v in obj]
    elif type(obj) is tuple:
        out = tuple(_as_standins(v, memo, seen) for v in obj)
        if all(a is b for a, b in zip(out, obj)):
            out = obj
    else:
        out = obj
    seen[id(obj)] = (obj, out)  # keeps OBJ alive so its id is not reused
    return out


def selfcheck(fixtures, tmp):
    """The writer against torch: real DeepSpeed files rewritten byte for byte, and torch's ZIP64 layout."""
    import glob
    n = 0
    for path in sorted(glob.glob(os.path.join(fixtures, "*", "checkpoint-*", "global_step*", "*.pt"))):
        obj = torch.load(path, map_location="cpu", weights_only=False)
        out = os.path.join(tmp, os.path.basename(path))
        TorchFile(_as_standins(obj, {})).write(out)
        a, b = open(path, "rb").read(), open(out, "rb").read()
        if a != b:
            raise SystemExit(f"selfcheck: {path} rewritten differs from the original "
                             f"(first difference at byte {next(i for i in range(min(len(a), len(b))) if a[i] != b[i]) if a[:min(len(a), len(b))] != b[:min(len(a), len(b))] else min(len(a), len(b))})")
        os.unlink(out)
        n += 1
    if not n:
        raise SystemExit(f"selfcheck: no DeepSpeed files under {fixtures}")
    # ZIP64: a 4 GiB + 64 B storage then a small one, beside torch's own skip_data save (also sparse).
    import zipfile
    ref, mine = os.path.join(tmp, "ref", "zip64.pt"), os.path.join(tmp, "mine", "zip64.pt")
    for d in (ref, mine):
        os.makedirs(os.path.dirname(d), exist_ok=True)
    with torch.serialization.skip_data():
        torch.save({"big": torch.empty(2**30 + 16), "small": torch.zeros(6, dtype=torch.uint8)}, ref)
    big = Storage(torch.float32, 2**30 + 16)
    TorchFile({"big": T(big, (2**30 + 16,)), "small": T(Storage(torch.uint8, 6, bytes(6)), (6,))}).write(mine)
    za, zb = zipfile.ZipFile(ref), zipfile.ZipFile(mine)
    fa, fb = open(ref, "rb"), open(mine, "rb")

    def at(f, off, n):
        f.seek(off)
        return f.read(n)

    # torch's skip_data writes no CRC-32s (0) and so another serialization id: all else must agree.
    ok = os.path.getsize(ref) == os.path.getsize(mine) and za.start_dir == zb.start_dir
    for ia, ib in zip(za.infolist(), zb.infolist()):
        ok = ok and (ia.filename, ia.file_size, ia.header_offset, ia.flag_bits, ia.extra) == \
            (ib.filename, ib.file_size, ib.header_offset, ib.flag_bits, ib.extra)
        la = at(fa, ia.header_offset, 30)
        nl, xl = struct.unpack("<HH", la[26:30])
        ok = ok and at(fa, ia.header_offset, 30 + nl + xl) == at(fb, ib.header_offset, 30 + nl + xl)
        data = ia.header_offset + 30 + nl + xl
        if ia.file_size < 1 << 20 and not ia.filename.endswith("serialization_id"):
            ok = ok and at(fa, data, ia.file_size) == at(fb, data, ia.file_size)
        dd = 24 if ia.extra else 16
        da, db = at(fa, data + ia.file_size, dd), at(fb, data + ia.file_size, dd)
        ok = ok and da[:4] == db[:4] and da[8:] == db[8:]
        if not ok:
            raise SystemExit(f"selfcheck: ZIP64 entry {ia.filename} differs from torch's")
    end = at(fa, za.start_dir, 1 << 20), at(fb, zb.start_dir, 1 << 20)
    cd_len = len(end[0]) - 98  # ZIP64 end record, locator, end record
    if end[0][cd_len:] != end[1][cd_len:]:
        raise SystemExit("selfcheck: ZIP64 end records differ from torch's")
    loaded = torch.load(mine, weights_only=True, mmap=True)
    assert loaded["big"].shape == (2**30 + 16,) and float(loaded["big"][-1]) == 0.0
    for p in (ref, mine):
        os.unlink(p)
    return n


def crosscheck_zero_to_fp32(tpl, tmp, weld):
    """Small generated ZeRO checkpoints holding real values: DeepSpeed's zero_to_fp32 and weld must rebuild them.

    Covers stage 3 (even and uneven world sizes, several sub-groups) and stage 2 (with padding)."""
    import contextlib
    import io
    import shutil
    import subprocess
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from safetensors.torch import load_file
    shutil.rmtree(tmp, ignore_errors=True)
    cases = [(3, 4, {}), (3, 3, {"sub_group_size": 3000}), (2, 4, {}), (2, 3, {})]
    for stage, world, kw in cases:
        d = os.path.join(tmp, f"z{stage}w{world}", "checkpoint-100")
        _, _, values = write_zero(d, tpl, "tiny", stage, world, fill=True, **kw)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            sd = get_fp32_state_dict_from_zero_checkpoint(d)
        out = os.path.join(tmp, f"out{stage}{world}")
        subprocess.run([weld, "convert", "--input", d, "--output", out, "--dtype", "keep", "--quiet"], check=True)
        w = load_file(os.path.join(out, "model.safetensors"))
        for who, got in (("zero_to_fp32", sd), ("weld", w)):
            if set(got) != set(values) or not all(torch.equal(got[n].flatten(), values[n]) for n in values):
                raise SystemExit(f"crosscheck: {who} does not rebuild the generated ZeRO-{stage} checkpoint "
                                 f"of world size {world} exactly")
    shutil.rmtree(tmp)
    return len(cases)
