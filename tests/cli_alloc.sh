#!/usr/bin/env bash
# weld batch when memory runs out. The shim tests/fault/fail_alloc.c fails
# the Nth allocation and every later one; for every N a command makes, the
# run must end either with exactly the output of a run with memory to spare
# (exit 0) or with a nonzero exit and an error line on stderr: never a
# crash, never exit 0 with other output (a silently partial run), never a
# temporary weights file left behind.
# Usage: cli_alloc.sh WELD SOURCE_DIR SHIM
set -u
weld=$1
fx=$2/tests/fixtures
shim=$3
fails=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
. "$(dirname "$0")/lib.sh"
run=$t/myrun
make_run "$run" qwen2_tied/st_sharded:checkpoint-2 zero/s2_w2_bf16:checkpoint-5 hf_edge/wrapped:checkpoint-7

# Only the allocations made from main on are swept. Those before it (the
# static CUDA runtime registering its kernels, libstdc++'s exception pool)
# are not weld's to handle: cudart crashes when they fail. `weld` with no
# arguments makes no others.
LD_PRELOAD=$shim WELD_FAIL_ALLOC_COUNT=$t/count "$weld" 2>/dev/null
startup=$(cat "$t/count" 2>/dev/null)
case $startup in
'' | *[!0-9]*)
	echo "FAIL: the shim reported no allocation count"
	exit 1
	;;
esac

# A real conversion's seconds and peak memory differ from run to run.
steady() {
	sed -E 's/ in [0-9.]+ s \([0-9.]+ GB\/s\), peak memory [0-9]+ MB/ in T/; s/ +[0-9]+\.[0-9]{2}$/ SECONDS/' "$1"
}

# sweep NAME CMD...: CMD once for its output and allocation count M, then
# once for every N from the first allocation in main to M.
sweep() {
	local name=$1 n rc total
	shift
	rm -rf "$t/out"
	LD_PRELOAD=$shim WELD_FAIL_ALLOC_COUNT=$t/count "$@" >"$t/stdout" 2>"$t/stderr" || {
		fail "$name: exited $? with memory to spare: $(head -3 "$t/stderr")"
		return
	}
	steady "$t/stdout" >"$t/baseline"
	total=$(cat "$t/count")
	for n in $(seq $((startup + 1)) "$total"); do
		rm -rf "$t/out"
		WELD_FAIL_ALLOC_AT=$n LD_PRELOAD=$shim "$@" >"$t/stdout" 2>"$t/stderr"
		rc=$?
		if [ $rc -ge 128 ]; then
			fail "$name: allocation $n failing: crashed (exit $rc)"
		elif [ $rc -eq 0 ]; then
			steady "$t/stdout" | cmp -s - "$t/baseline" ||
				fail "$name: allocation $n failing: exit 0 with other output: $(head -3 "$t/stdout")"
		elif ! grep -q "error: " "$t/stderr"; then
			fail "$name: allocation $n failing: exit $rc without an error line"
		fi
		if ls -A "$t"/out/* 2>/dev/null | grep -q weld-tmp; then
			fail "$name: allocation $n failing: a temporary file was left behind"
		fi
	done
	echo "$name: allocations $((startup + 1)) to $total failed in turn"
}

b() { "$weld" batch --input-dir "$run" --device cpu --quiet "$@"; }
sweep "plan" b --output-dir "$t/out" --dry-run --all-checkpoints
sweep "count" b --dry-run --count --all-checkpoints
sweep "filtered count" b --dry-run --count --all-checkpoints --checkpoint-filter 'checkpoint-[27]'
# One thread: the same N fails at the same place on every run.
sweep "conversion" b --output-dir "$t/out" --all-checkpoints --array-index 1 --threads 1

# weld.json read with exact integers: one past 2^53 takes an allocation of its own,
# whose failure must be an error, never a silent fall back to a rounded double.
"$weld" batch --input-dir "$run" --device cpu --quiet --output-dir "$t/v" --all-checkpoints --array-index 0 >/dev/null ||
	fail "conversion for verify failed"
m=$(ls "$t"/v/*/weld.json)
sed -i '0,/{/s//{"note_big": 18446744073709551615,/' "$m"
sweep "verify" "$weld" verify "$(dirname "$m")"

if [ "$fails" -ne 0 ]; then
	echo "$fails allocation-failure check(s) failed"
	exit 1
fi
echo "all allocation-failure checks passed"
