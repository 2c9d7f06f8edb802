#!/usr/bin/env bash
# weld scan: every hostile file is unsafe naming the global the reader refuses
# (tests/fixtures/hostile/EXPECTED), control_ok.pt and every real fixture is
# safe, exit codes, --json. Usage: cli_scan.sh WELD SOURCE_DIR
set -u
weld=$1
src=$2
dir=$src/tests/fixtures/hostile
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
while IFS=$'\t' read -r file want; do
	case $file in '#'* | '') continue ;; esac
	out=$("$weld" scan "$dir/$file"); rc=$?
	if [ "$want" = OK ]; then
		[ $rc -eq 0 ] && [[ $out == safe* ]] || fail "scan $file: exit $rc, expected safe: $out"
		continue
	fi
	[ $rc -eq 1 ] && [[ $out == unsafe* ]] || { fail "scan $file: exit $rc, expected unsafe: $out"; continue; }
	g=$(sed -n "s/^global '\(.*\)' is not a data type.*/\1/p" <<<"$want")
	[ -n "$g" ] || g=builtins.getattr # the getattr-misuse refusal
	grep -qF "  $g at offset " <<<"$out" || fail "scan $file does not name $g: $out"
done <"$dir/EXPECTED"
# Real checkpoints: every file weld reads is safe (training_args.bin holds
# transformers/accelerate classes weld never reads: unsafe, as for weights_only).
real=$(find "$src/tests/fixtures/zero" "$src/tests/fixtures/zero_versions" "$src/tests/fixtures/trainer" \
	"$src/tests/fixtures/qwen2_tied" "$src/tests/fixtures/torch_edge" "$src/tests/fixtures/megatron" \
	"$src/tests/fixtures/dcp" -type f \( -name '*.pt' -o -name '*.bin' -o -name '*.pkl' -o -name '*.pth' \
	-o -name .metadata \) ! -name training_args.bin | sort)
grep -q '/dcp/titan_2d/step-3/.metadata$' <<<"$real" || fail "no DCP .metadata among the real fixtures"
[ -n "$real" ] || fail "no real fixtures found"
while read -r f; do
	out=$("$weld" scan "$f") || fail "real fixture not safe: $out"
done <<<"$real"
"$weld" scan "$src/tests/fixtures/zero" "$src/tests/fixtures/megatron" "$src/tests/fixtures/dcp/titan_2d" \
	"$src/tests/fixtures/dcp/fsdp2_empty" >/dev/null || fail "folders not safe"
"$weld" scan "$src/tests/fixtures/trainer" >/dev/null; [ $? -eq 1 ] || fail "trainer folder (training_args.bin) should be unsafe"
# Exit codes and --json.
"$weld" scan >/dev/null 2>&1; [ $? -eq 2 ] || fail "no PATH: expected exit 2"
"$weld" scan --bogus x >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option: expected exit 2"
"$weld" scan --help | tail -4 | grep -q "exit codes" || fail "help lacks exit codes"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# --allow-global: the user's class counts as allowed, as convert accepts it; dunder names never.
cc=$dir/allow/custom_class.pt
out=$("$weld" scan "$cc"); [ $? -eq 1 ] && grep -q "  mylab.configs.RunConfig at offset" <<<"$out" || fail "custom class: $out"
out=$("$weld" scan --allow-global mylab.configs.RunConfig "$cc"); [ $? -eq 0 ] && [[ $out == safe* ]] ||
	fail "--allow-global: $out"
out=$("$weld" scan --allow-global=mylab.configs.Other "$cc"); [ $? -eq 1 ] || fail "another class allowed: $out"
"$weld" convert --input "$cc" --output "$tmp/allowed" --allow-global mylab.configs.RunConfig --quiet ||
	fail "convert does not accept what scan --allow-global calls safe"
out=$("$weld" scan --allow-global builtins.__import__ "$cc" 2>&1); [ $? -eq 1 ] &&
	[ "$out" = "weld: error: allowed global 'builtins.__import__' names a dunder attribute, which is never data" ] ||
	fail "dunder allow: $out"
printf '\x80\x02K' >"$tmp/trunc.pkl"
out=$("$weld" scan "$tmp/trunc.pkl"); [ $? -eq 1 ] && [[ $out == malformed* ]] || fail "truncated pickle: $out"
printf '\x80\x02\xff.' >"$tmp/badop.pkl"
"$weld" scan "$tmp/badop.pkl" | grep -q "unknown pickle opcode 0xff at offset 2" || fail "unknown opcode offset"
"$weld" scan --json "$dir/os_system.pt" "$dir/control_ok.pt" "$tmp/trunc.pkl" >"$tmp/j"; [ $? -eq 1 ] || fail "--json exit"
python3 - "$tmp/j" <<'PY' || fails=$((fails + 1))
import json, sys
o = json.load(open(sys.argv[1]))
assert o["all_safe"] is False, o
f = o["files"]
assert [x["verdict"] for x in f] == ["unsafe", "safe", "malformed"], f
bad = [g for g in f[0]["globals"] if not g["allowed"]]
assert [g["global"] for g in bad] == ["posix.system"] and isinstance(bad[0]["offset"], int), bad
assert bad[0]["pickle"].endswith("data.pkl"), bad
assert all(g["allowed"] for g in f[1]["globals"]) and f[1]["pickles"] == 1, f[1]
assert "truncated" in f[2]["problem"], f[2]
PY
# A getattr member called by OBJ (pathlib's write_text: a file written when Python loads it), a class
# called by INST, a class given attributes by BUILD: unsafe, and the reader refuses each.
for kind in obj inst build; do
	python3 - "$tmp/$kind.pkl" "$kind" <<'PY'
import sys
path, kind = sys.argv[1], sys.argv[2]
canary = b"/tmp/weld-scan-canary"
x = lambda b: b"X" + len(b).to_bytes(4, "little") + b
body = {
    "obj": b"cbuiltins\ngetattr\ncpathlib\nPosixPath\n" + x(b"write_text") + b"\x86Rq\x000(h\x00cpathlib\nPosixPath\n"
           + x(canary) + b"\x85R" + x(b"pwned") + b"o",
    "inst": b"(" + x(canary) + b"ipathlib\nPosixPath\n",
    "build": b"cpathlib\nPosixPath\n}" + x(b"write_text") + b"N" + b"sb",
}[kind]
open(path, "wb").write(b"\x80\x02" + body + b".")
PY
	out=$("$weld" scan "$tmp/$kind.pkl")
	[ $? -eq 1 ] && [[ $out == unsafe* ]] || fail "$kind: scan says: $out"
done
[ ! -e /tmp/weld-scan-canary ] || fail "a canary appeared"
# A memo index far past the pickle's size (which made the scan allocate 128 MiB for 9 bytes): malformed.
printf '\x80\x02Nr\xfe\xff\xff\x00.' >"$tmp/memo.pkl"
out=$("$weld" scan "$tmp/memo.pkl")
[ $? -eq 1 ] && [[ $out == malformed* ]] && [[ $out == *"LONG_BINPUT at offset 3 uses a memo index beyond weld's limit"* ]] ||
	fail "memo index: $out"

echo "scan: $fails failures"
[ $fails -eq 0 ]
