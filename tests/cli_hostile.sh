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
echo "hostile corpus: $refused refusals, $accepted acceptances (inspect and convert each), $fails failures"
[ $fails -eq 0 ]
