#!/usr/bin/env python3
"""Print every global a pickle references, for building weld's allowlist.

Usage: scripts/list_globals.py [PATH...]   (default: tests/fixtures ../shared/fixtures)

Walks files (.pt .bin .pth .pkl .pickle .ckpt .metadata and zip members
ending in .pkl), decodes them with pickletools.genops (which executes
nothing) and prints "COUNT MODULE.NAME  e.g. FILE" per global, or with -v the
files each is in. GLOBAL is read from its argument; STACK_GLOBAL from the two
strings pushed before it (tracked through the memo).
"""
import collections, io, os, pickletools, sys, zipfile

EXTS = ('.pt', '.bin', '.pth', '.pkl', '.pickle', '.ckpt', '.metadata')


def globals_in(data):
    out, strs, memo = [], [], {}
    last = None  # the string the previous opcode pushed, if it pushed one
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            n = op.name
            pushed = None
            if n == 'GLOBAL':
                mod, name = arg.split(' ', 1)
                out.append((mod, name))
            elif n == 'STACK_GLOBAL':
                out.append((strs[-2], strs[-1]) if len(strs) >= 2 else ('?', '?'))
            elif n in ('SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'UNICODE'):
                strs.append(arg)
                pushed = arg
            elif n == 'MEMOIZE':
                memo[len(memo)] = last
                pushed = last
            elif n in ('BINPUT', 'LONG_BINPUT', 'PUT'):
                memo[int(arg)] = last
                pushed = last
            elif n in ('BINGET', 'LONG_BINGET', 'GET'):
                if memo.get(int(arg)) is not None:
                    strs.append(memo[int(arg)])
                    pushed = memo[int(arg)]
            last = pushed
            if n == 'STOP':
                break
    except Exception as e:  # legacy files: several pickles back to back; partial is fine
        pass
    return out


def legacy_pickles(data):
    """Legacy torch.save: magic, protocol, sys info, then the object pickle."""
    res, f = [], io.BytesIO(data)
    for _ in range(4):
        start = f.tell()
        try:
            for op, arg, pos in pickletools.genops(f):
                if op.name == 'STOP':
                    break
        except Exception:
            break
        res.append(data[start:f.tell()])
    return res


def scan(path, seen):
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for m in z.namelist():
                    if m.endswith('.pkl'):
                        for g in globals_in(z.read(m)):
                            seen[g].add(path + ':' + m)
            return
        data = open(path, 'rb').read()
    except Exception:
        return
    for chunk in legacy_pickles(data) or [data]:
        for g in globals_in(chunk):
            seen[g].add(path)


def main(argv):
    verbose = '-v' in argv
    roots = [a for a in argv if a != '-v'] or ['tests/fixtures', '../shared/fixtures']
    seen = collections.defaultdict(set)
    for r in roots:
        if os.path.isfile(r):
            scan(r, seen)
            continue
        for d, _, files in os.walk(r):
            for f in sorted(files):
                if f.endswith(EXTS):
                    scan(os.path.join(d, f), seen)
    for (m, n), files in sorted(seen.items()):
        print(f'{len(files):5d} {m}.{n}  e.g. {sorted(files)[0]}')
        if verbose:
            for f in sorted(files):
                print('        ', f)


if __name__ == '__main__':
    main(sys.argv[1:])
