#!/usr/bin/env bash
# Several conversions into one output folder. A second run while the first
# holds the lock fails at once, naming the holder's host and PID; racers
# started together leave exactly one of their outputs, whole, and nothing
# beside it; a verify loop watching the folder while it is replaced again and
# again never sees a mix of two outputs.
# Usage: cli_lock.sh WELD SOURCE_DIR
set -u
weld=$1
fx=$2/tests/fixtures
fails=0
t=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$t"' EXIT
out=$t
. "$(dirname "$0")/lib.sh"
in=$fx/qwen2_tied/st_sharded
conv() { "$weld" convert --input "$in" --device cpu --quiet "$@"; }
same() { diff -r --no-dereference "$1" "$2" >/dev/null 2>&1; }
for d in bfloat16 float16 float32; do
	conv --output "$t/ref-$d" --dtype $d || fail "reference $d failed"
done

# A first run, stopped while it holds the lock. Its input, 64 MiB of sparse
# zeros converted in 4 KiB chunks, keeps it busy long enough to be caught.
slow=$t/slow
sparse_input "$slow" 64
"$weld" convert --input "$slow" --output "$t/ref-slow" --device cpu --quiet || fail "slow reference failed"
mkdir -p "$t/area"
"$weld" convert --input "$slow" --output "$t/area/out" --device cpu --quiet --threads 1 --chunk-bytes 4096 &
first=$!
while [ ! -e "$t/area/.out.weld-lock" ] && kill -0 $first 2>/dev/null; do :; done
kill -STOP $first
[ -e "$t/area/.out.weld-lock" ] || fail "the first run was not caught holding its lock"
start=$(date +%s%N)
expect 1 conv --output "$t/area/out" --dtype float16 --force
took=$((($(date +%s%N) - start) / 1000000))
has stderr "weld: error: $t/area/.out.weld-lock: another conversion into this folder is running (process $first on host $(hostname) since "
[ $took -lt 2000 ] || fail "the second run took $took ms to give up"
kill -CONT $first
wait $first || fail "the first run failed after the second was refused"
same "$t/area/out" "$t/ref-slow" || fail "the first run's output is not whole"
[ "$(ls -A "$t/area")" = out ] || fail "left beside the output: $(ls -A "$t/area")"

# Racers: each run either wins whole or is refused with the holder named.
for round in 1 2 3 4 5 6 7 8; do
	rm -rf "$t/race"
	pids=()
	for d in bfloat16 float16 float32; do
		conv --output "$t/race" --dtype $d --force 2>"$t/race-$d.err" &
		pids+=($!)
	done
	won=0
	for i in 0 1 2; do
		wait "${pids[$i]}" && won=$((won + 1))
	done
	[ $won -ge 1 ] || fail "round $round: no run won"
	for d in bfloat16 float16 float32; do
		[ ! -s "$t/race-$d.err" ] || grep -q "another conversion into this folder is running (process [0-9]* on host $(hostname) since " "$t/race-$d.err" ||
			fail "round $round: $d failed otherwise: $(cat "$t/race-$d.err")"
	done
	same "$t/race" "$t/ref-bfloat16" || same "$t/race" "$t/ref-float16" || same "$t/race" "$t/ref-float32" ||
		fail "round $round: the folder is none of the outputs whole"
	[ -z "$(ls -A "$t" | grep '^\.race\.')" ] || fail "round $round: left $(ls -A "$t" | grep '^\.race\.')"
done

# verify in a loop while the folder is replaced by bf16 and fp16 outputs in turn.
conv --output "$t/watched" --dtype bfloat16
(
	for i in $(seq 1 30); do
		conv --output "$t/watched" --dtype float16 --force 2>/dev/null
		conv --output "$t/watched" --dtype bfloat16 --force 2>/dev/null
	done
) &
writer=$!
checks=0
while kill -0 $writer 2>/dev/null; do
	"$weld" verify "$t/watched" --device cpu >"$t/report" 2>&1
	rc=$?
	checks=$((checks + 1))
	[ $rc -eq 0 ] || { fail "verify during replacement exited $rc: $(grep -v '^PASS' "$t/report" | head -3)"; break; }
done
wait $writer
[ $checks -ge 5 ] || fail "only $checks verify runs overlapped the replacements"

if [ "$fails" -ne 0 ]; then
	echo "$fails lock check(s) failed"
	exit 1
fi
echo "all lock checks passed ($checks verify runs during replacement)"
