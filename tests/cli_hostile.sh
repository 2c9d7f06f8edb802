#!/usr/bin/env bash
# The hostile corpus (tests/fixtures/hostile, written by gen_hostile.py there):
# malicious-pickle payload styles beside a valid tensor in a torch file. Each
# must be refused by `weld inspect` and `weld convert` with exactly the message
# in EXPECTED, and the canary file the payloads would create must never
# appear. control_ok.pt (allowlisted data only) must be accepted.
# Usage: cli_hostile.sh WELD SOURCE_DIR
set -u
weld=$1
dir=$2/tests/fixtures/hostile
canary=/tmp/weld-hostile-canary
fails=0 refused=0 accepted=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rm -f "$canary"
while IFS=$'\t' read -r file want; do
	case $file in '#'* | '') continue ;; esac
	f=$dir/$file
	for cmd in inspect convert; do
		if [ $cmd = inspect ]; then
			"$weld" inspect "$f" >"$out/stdout" 2>"$out/stderr"
		else
			rm -rf "$out/o"
			"$weld" convert --input "$f" --output "$out/o" >"$out/stdout" 2>"$out/stderr"
		fi
		rc=$?
		if [ "$want" = OK ]; then
			if [ $rc -ne 0 ]; then
				echo "FAIL: weld $cmd $file: exit $rc, expected 0: $(cat "$out/stderr")"
				fails=$((fails + 1))
			else
				accepted=$((accepted + 1))
			fi
			continue
		fi
		msg="weld: error: $f: data.pkl: $want"
		if [ $rc -ne 1 ] || ! grep -qxF -- "$msg" "$out/stderr"; then
			echo "FAIL: weld $cmd $file: exit $rc, expected 1 and the line"
			echo "  $msg"
			echo "  got: $(cat "$out/stderr")"
			fails=$((fails + 1))
		else
			refused=$((refused + 1))
		fi
		if [ $cmd = convert ] && [ -e "$out/o/model.safetensors" ]; then
			echo "FAIL: weld convert $file wrote a model.safetensors"
			fails=$((fails + 1))
		fi
	done
	if [ -e "$canary" ]; then
		echo "FAIL: $canary exists after $file: a payload ran"
		fails=$((fails + 1))
	fi
done <"$dir/EXPECTED"
# --allow-global: a class the user trusts (allow/custom_class.pt, by make_allow.py) is read as inert
# data by inspect, convert and batch; without it, refused by name; a malformed name is refused.
. "$(dirname "$0")/lib.sh"
custom=$dir/allow/custom_class.pt
expect 1 "$weld" inspect "$custom"
last stderr "weld: error: $custom: data.pkl: global 'mylab.configs.RunConfig' is not a data type weld knows; nothing was executed"
expect 0 "$weld" inspect "$custom" --allow-global mylab.configs.RunConfig --allow-global=other.Cls
has stdout "1 tensors, 12 parameters, 48 bytes"
expect 0 "$weld" convert --input "$custom" --output "$out/allowed" --allow-global mylab.configs.RunConfig --device cpu
expect 0 "$weld" inspect "$out/allowed/model.safetensors"
has stdout "w     BF16    [3, 4]"
mkdir -p "$out/run/checkpoint-1" && cp "$custom" "$out/run/checkpoint-1/pytorch_model.bin"
expect 0 "$weld" batch --input-dir "$out/run" --output-dir "$out/outs" --allow-global mylab.configs.RunConfig --device cpu
[ -f "$out/outs/run_step_1/model.safetensors" ] || { echo "FAIL: batch --allow-global wrote nothing"; fails=$((fails + 1)); }
expect 1 "$weld" inspect "$custom" --allow-global nodot
last stderr "weld: error: allowed global 'nodot' is not MODULE.NAME"
expect 1 "$weld" inspect "$custom" --allow-global os.__class__
last stderr "weld: error: allowed global 'os.__class__' names a dunder attribute, which is never data"
[ ! -e "$canary" ] || { echo "FAIL: $canary exists"; fails=$((fails + 1)); }

echo "hostile corpus: $refused refusals, $accepted acceptances (inspect and convert each), $fails failures"
[ $fails -eq 0 ]
