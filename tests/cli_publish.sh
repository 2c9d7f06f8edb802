#!/usr/bin/env bash
# What users hit before the output folder became one unit, each as it was
# reported: a failure after the weights were in place, --force that removed
# the old output before the new one existed, a new output folder whose
# parent was never made durable, an fsync error ignored, side files written
# under names without a PID. Faults come from tests/fault/fault_io.c.
# Usage: cli_publish.sh WELD SOURCE_DIR SHIM
set -u
weld=$(readlink -f "$1")
fx=$(readlink -f "$2")/tests/fixtures
shim=$3
fails=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
out=$t
. "$(dirname "$0")/lib.sh"
same() { diff -r --no-dereference "$1" "$2" >/dev/null 2>&1; }
conv() { "$weld" convert --device cpu --threads 1 --quiet "$@"; }
toy=$fx/hf_edge/wrapped
qwen=$fx/qwen2_tied/st_sharded
conv --input "$toy" --output "$t/old" || fail "old reference failed"
mkdir "$t/log" # the shim's log, outside the folders it watches

# 1. ENOSPC on the first write of a side file, converting qwen2 over the toy's
# output with --force: the toy's output stays whole (it used to get qwen2's
# weights beside the toy's config.json, and verify passed it).
mkdir "$t/d"
cp -a "$t/old" "$t/d/1"
cp -a "$t/old" "$t/d/count"
first_side_write=$(WELD_FAULT_DIR="$t/d" WELD_FAULT_LOG="$t/log/calls" LD_PRELOAD="$shim" \
	conv --input "$qwen" --output "$t/d/count" --force && grep '^write .*/\.config\.json\.weld-tmp-' "$t/log/calls" | head -1 | cut -d' ' -f2)
[ -n "$first_side_write" ] || fail "no side-file write seen"
expect 1 env WELD_FAULT_DIR="$t/d" WELD_FAULT="write:$first_side_write:fail" LD_PRELOAD="$shim" \
	"$weld" convert --device cpu --threads 1 --quiet --input "$qwen" --output "$t/d/1" --force
has stderr ".config.json.weld-tmp-"
has stderr "No space left on device"
same "$t/d/1" "$t/old" || fail "ENOSPC on a side file changed the old output"

# ... and an input whose side files cannot be copied: a dangling tokenizer.json, a config.json cut short.
for bad in dangling cut; do
	cp -r "$qwen" "$t/in-$bad"
	chmod -R u+w "$t/in-$bad"
	if [ $bad = dangling ]; then
		ln -s nowhere "$t/in-$bad/tokenizer.json"
	else
		truncate -s 100 "$t/in-$bad/config.json"
	fi
	cp -a "$t/old" "$t/d-$bad"
	expect 1 conv --input "$t/in-$bad" --output "$t/d-$bad" --force
	same "$t/d-$bad" "$t/old" || fail "an unreadable side file ($bad) changed the old output"
	[ -z "$(ls -A "$t" | grep "^\.d-$bad\.")" ] || fail "$bad: left $(ls -A "$t" | grep "^\.d-$bad\.")"
done

# 4. --force --pytorch-bin over a model.safetensors output, stopped by SIGTERM
# mid-way: the old output is whole (the old weights were deleted up front).
sparse_input "$t/big" 256
cp -a "$t/old" "$t/d4"
"$weld" convert --device cpu --threads 1 --quiet --input "$t/big" --output "$t/d4" --force --pytorch-bin --chunk-bytes 4096 2>"$t/log/sigterm" &
pid=$!
wait_staging "$t" d4
kill -TERM $pid
wait $pid
[ $? -eq 143 ] || fail "SIGTERM did not give 143"
grep -q "^weld: interrupted by SIGTERM; the output folder is as it was$" "$t/log/sigterm" || fail "SIGTERM message: $(cat "$t/log/sigterm")"
same "$t/d4" "$t/old" || fail "--force --pytorch-bin interrupted changed the old output"
[ -z "$(ls -A "$t" | grep '^\.d4\.')" ] || fail "SIGTERM left $(ls -A "$t" | grep '^\.d4\.')"

# An empty folder given as the output, which someone writes into while the
# conversion runs: without --force their file is kept and the run fails.
mkdir -p "$t/empty"
"$weld" convert --device cpu --threads 1 --quiet --input "$t/big" --output "$t/empty" --chunk-bytes 4096 2>"$t/log/empty" &
pid=$!
wait_staging "$t" empty
echo "my notes" >"$t/empty/notes.txt"
wait $pid
[ $? -eq 1 ] || fail "a file written into the empty output during the run was not reported"
grep -q "^weld: error: $t/empty: files appeared in it during the conversion; use --force to replace it$" "$t/log/empty" ||
	fail "appeared message: $(cat "$t/log/empty")"
[ "$(ls -A "$t/empty")" = notes.txt ] || fail "the output holds $(ls -A "$t/empty")"

# "--output ." and a link to a folder name the folder itself: both publish, nothing is left beside.
mkdir -p "$t/here/out" && cp -a "$t/old/." "$t/here/out/"
(cd "$t/here/out" && "$weld" convert --device cpu --quiet --input "$qwen" --output . --force) || fail "--output . failed"
same "$t/here/out" "$t/d/count" || fail "--output . did not give the new output"
ln -s "$t/here/out" "$t/here-link"
conv --input "$toy" --output "$t/here-link" --force || fail "--output LINK failed"
same "$t/here/out" "$t/old" && [ -L "$t/here-link" ] || fail "--output LINK did not replace the folder it names"
[ "$(ls -A "$t/here")" = out ] || fail "left beside: $(ls -A "$t/here")"

# 5. A new output folder in new parents: each parent made is synced into its
# own parent, the target's parent is synced after the rename, and a failure
# of that sync is an error, not exit 0.
rm -f "$t/log/calls"
WELD_FAULT_DIR="$t/new" WELD_FAULT_LOG="$t/log/calls" LD_PRELOAD="$shim" conv --input "$toy" --output "$t/new/a/b/out" ||
	fail "conversion into new parents failed"
grep -q "^mkdir [0-9]* $t/new/a/b$" "$t/log/calls" && grep -q "^fsync [0-9]* $t/new/a$" "$t/log/calls" ||
	fail "a created parent was not synced into its own: $(grep -E '^(mkdir|fsync)' "$t/log/calls")"
[ "$(grep -E "^(rename|fsync) " "$t/log/calls" | tail -2 | cut -d' ' -f1,3 | tr '\n' ' ')" = "rename $t/new/a/b/out fsync $t/new/a/b " ] ||
	fail "the parent was not synced after the rename: $(grep -E '^(rename|fsync)' "$t/log/calls" | tail -3)"
last_fsync=$(grep "^fsync [0-9]* $t/new/a/b$" "$t/log/calls" | tail -1 | cut -d' ' -f2)
rm -rf "$t/new"
expect 1 env WELD_FAULT_DIR="$t/new" WELD_FAULT="fsync:$last_fsync:fail" LD_PRELOAD="$shim" \
	"$weld" convert --device cpu --quiet --input "$toy" --output "$t/new/a/b/out"
has stderr "$t/new/a/b: cannot sync folder: Input/output error"
# Every temporary name carries the PID of the run that wrote it.
grep -E '^open [0-9]+ .*\.weld-tmp' "$t/log/calls" | grep -vqE '\.weld-tmp-[0-9]+$' &&
	fail "a temporary name without a PID: $(grep -E '^open [0-9]+ .*\.weld-tmp' "$t/log/calls" | grep -vE '\.weld-tmp-[0-9]+$')"

if [ "$fails" -ne 0 ]; then
	echo "$fails publish check(s) failed"
	exit 1
fi
echo "all publish checks passed"
