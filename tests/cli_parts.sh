#!/usr/bin/env bash
# One conversion run as K processes at once (--parts K --part I): for an HF,
# a ZeRO and a DCP checkpoint, one file and shards, K = 1, 2, 3 and 7 parts
# started together must give the very bytes of a single-process run (every
# file of the folder, weld.json included). A part killed mid-way publishes
# nothing and leaves the others' work; rerunning that part alone completes
# the job. --finish names the parts that are missing, and publishes a job
# whose parts are all recorded. Another job into the same folder is refused, and so are a
# folder whose job.json is gone, a record of another job, a changed input file and a lost
# weights file; one part rerun with --force stays the job's, and a recorded part is not rewritten.
# Usage: cli_parts.sh WELD SOURCE_DIR [FAULT_SHIM]
set -u
weld=$1
fx=$2/tests/fixtures
shim=${3:-}
fails=0
t=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$t"' EXIT
out=$t
. "$(dirname "$0")/lib.sh"
conv() { "$weld" convert --device cpu --quiet "$@"; }
same() { diff -r --no-dereference "$1" "$2" >/dev/null 2>&1; }

# parts IN OUT K [OPTIONS...]: K parts of one job started together; every one must exit 0.
parts() {
	local in=$1 dir=$2 k=$3 pids=() i
	shift 3
	for ((i = 0; i < k; i++)); do
		conv --input "$in" --output "$dir" --parts "$k" --part "$i" "$@" 2>"$t/err-$i" &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || fail "$in: part $i of $k failed: $(cat "$t/err-$i")"
	done
}

# Byte identity with the single-process run, for every input kind, one file and shards.
n=0
# Each fixture with a shard limit that cuts it into several shards (checked below).
for spec in qwen2_tied/st_sharded:100KB zero/s3_w2_bf16:2KB dcp/titan_2d/step-3:5KB; do
	limit=${spec##*:}
	spec=${spec%%:*}
	for shard in "" "$limit"; do
		opts=()
		[ -n "$shard" ] && opts=(--max-shard-size "$shard")
		ref=$t/ref-$n
		conv --input "$fx/$spec" --output "$ref" "${opts[@]}" || fail "$spec reference failed"
		for k in 1 2 3 7; do
			parts "$fx/$spec" "$t/out-$n-$k" "$k" "${opts[@]}"
			same "$ref" "$t/out-$n-$k" || fail "$spec ${opts[*]}: $k parts differ from one process"
			[ "$(ls -A "$t" | grep -c "^\.out-$n-$k")" = 0 ] || fail "$spec $k parts left $(ls -A "$t" | grep "^\.out-$n-$k")"
		done
		n=$((n + 1))
	done
done
for n in 1 3 5; do
	[ "$(ls "$t"/ref-$n | grep -c '^model-0000.-of-0000.\.safetensors$')" -gt 1 ] || fail "ref-$n is not sharded"
done
# --pytorch-bin: its zip directory follows the tensors, written by the publisher from every part's CRCs.
conv --input "$fx/qwen2_tied/st_sharded" --output "$t/ref-bin" --pytorch-bin || fail "bin reference failed"
parts "$fx/qwen2_tied/st_sharded" "$t/out-bin" 3 --pytorch-bin
same "$t/ref-bin" "$t/out-bin" || fail "--pytorch-bin: 3 parts differ from one process"

# Parts one after another: each but the last says what is still to come; the last publishes.
in=$fx/qwen2_tied/st_sharded
expect 0 "$weld" convert --device cpu --input "$in" --output "$t/seq" --parts 3 --part 2
has stderr "weld: note: part 2 of 3 recorded; the output is published when parts 0, 1 are too"
[ ! -e "$t/seq" ] || fail "published with parts 0 and 1 missing"
# --finish names what is missing, exactly.
expect 1 "$weld" convert --finish --output "$t/seq"
has stderr "weld: error: $t/seq: parts 0, 1 of 3 not recorded; run them again (the same command with --parts 3 --part N), and the last one publishes"
# Another job (another input) into the same folder is refused while this one is unfinished.
expect 1 conv --input "$fx/zero/s3_w2_bf16" --output "$t/seq" --parts 3 --part 0
has stderr "weld: error: $t/.seq.weld-parts: another multi-part conversion into this folder is unfinished (a different input, options or part count); finish it with --finish, or --force discards it"
expect 1 conv --input "$in" --output "$t/seq" --parts 2 --part 0
has stderr "another multi-part conversion into this folder is unfinished"
# So is a whole conversion.
expect 1 conv --input "$in" --output "$t/seq"
has stderr "weld: error: $t/.seq.weld-parts: a multi-part conversion into this folder is unfinished; weld convert --finish --output $t/seq publishes it once every part is recorded, or --force discards it"
expect 0 conv --input "$in" --output "$t/seq" --parts 3 --part 0
expect 1 "$weld" convert --finish --output "$t/seq"
has stderr "weld: error: $t/seq: part 1 of 3 not recorded; run it again (the same command with --parts 3 --part N), and the last one publishes"
expect 0 conv --input "$in" --output "$t/seq" --parts 3 --part 1
same "$t/ref-0" "$t/seq" || fail "parts run one after another differ from one process"
expect 1 "$weld" convert --finish --output "$t/seq"
has stderr "weld: error: $t/seq: no multi-part conversion into this folder is unfinished"

# --finish publishes a job whose last part recorded but could not publish (its claim taken, as by a killed publisher).
conv --input "$in" --output "$t/fin" --parts 2 --part 0 || fail "fin part 0 failed"
touch "$t/.fin.weld-parts/publish.claim"
expect 0 "$weld" convert --device cpu --input "$in" --output "$t/fin" --parts 2 --part 1
has stderr "part 1 of 2 recorded; another part publishes the output (if it cannot, weld convert --finish --output $t/fin does)"
[ ! -e "$t/fin" ] || fail "published without the claim"
expect 0 "$weld" convert --finish --output "$t/fin" --quiet
same "$t/ref-0" "$t/fin" || fail "--finish differs from one process"

# A part killed mid-way: nothing published, the other part's record kept; that part alone, run
# again, completes the job. With the fault shim the kill comes just before its 50th write into the
# output's folder (of 8193: 32 MiB of sparse zeros in 4 KiB chunks); without it (sanitizer builds),
# after its weights file appears.
slow=$t/slow
sparse_input "$slow" 64
conv --input "$slow" --output "$t/ref-slow" || fail "slow reference failed"
conv --input "$slow" --output "$t/kill" --parts 2 --part 0 || fail "slow part 0 failed"
if [ -n "$shim" ]; then
	WELD_FAULT_DIR=$t WELD_FAULT=write:50:kill LD_PRELOAD=$shim \
		"$weld" convert --device cpu --quiet --input "$slow" --output "$t/kill" --parts 2 --part 1 --chunk-bytes 4096
	[ $? = 137 ] || fail "the part was not killed"
else
	# weld itself in the background, not the conv function: $! must be weld's pid, or the kill
	# would take a subshell and leave weld to finish and publish behind the test's back.
	"$weld" convert --device cpu --quiet --input "$slow" --output "$t/kill" --parts 2 --part 1 --threads 1 \
		--chunk-bytes 4096 &
	victim=$!
	for _ in $(seq 1 400); do [ -e "$t/.kill.weld-parts/model.safetensors" ] && break; sleep 0.01; done
	kill -9 $victim
	wait $victim 2>/dev/null
fi
[ -e "$t/.kill.weld-parts/part-1" ] && fail "the killed part was recorded (it finished before the kill: no test)"
[ ! -e "$t/kill" ] || fail "a job with a killed part was published"
[ -e "$t/.kill.weld-parts/part-0" ] || fail "the other part's record is gone"
expect 1 "$weld" convert --finish --output "$t/kill"
has stderr "weld: error: $t/kill: part 1 of 2 not recorded"
expect 0 conv --input "$slow" --output "$t/kill" --parts 2 --part 1
same "$t/ref-slow" "$t/kill" || fail "the rerun of the killed part did not complete the job byte for byte"
[ ! -e "$t/.kill.weld-parts" ] || fail "the parts folder stayed after the publish"

# The publisher killed as it stages the weights (its 4th link: the lock and job.json as it joins, the
# lock as it publishes, then the weights file into the staging folder): every part is recorded and the claim
# taken, so no part publishes again; --finish does, byte for byte.
if [ -n "$shim" ]; then
	conv --input "$in" --output "$t/pub" --parts 2 --part 0 || fail "pub part 0 failed"
	WELD_FAULT_DIR=$t WELD_FAULT=link:4:kill LD_PRELOAD=$shim \
		"$weld" convert --device cpu --quiet --input "$in" --output "$t/pub" --parts 2 --part 1
	[ $? = 137 ] || fail "the publisher was not killed"
	[ ! -e "$t/pub" ] || fail "a killed publisher published"
	[ -e "$t/.pub.weld-parts/publish.claim" ] || fail "the part was killed before it claimed the publish"
	ls -d "$t"/.pub.weld-stage-* >/dev/null 2>&1 || fail "the publisher was killed before it staged"
	expect 0 "$weld" convert --device cpu --input "$in" --output "$t/pub" --parts 2 --part 1
	has stderr "another part publishes the output"
	expect 0 "$weld" convert --finish --output "$t/pub" --quiet
	same "$t/ref-0" "$t/pub" || fail "--finish after a killed publisher differs from one process"
	[ "$(ls -A "$t" | grep -c '^\.pub')" = 0 ] || fail "--finish left $(ls -A "$t" | grep '^\.pub')"
fi

# A flipped byte in a ZeRO rank's fp32 partition (zip record data/3, which every part reads a piece
# of): no part can check the record alone, so the publisher checks it from all parts' pieces and
# refuses, as one process does; nothing is published.
cp -r "$fx/zero/s3_w2_bf16" "$t/bad"
chmod -R u+w "$t/bad"
printf '\x5a' | dd of="$t/bad/global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt" bs=1 seek=10000 conv=notrunc status=none
expect 1 conv --input "$t/bad" --output "$t/bad-one"
has stderr "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt: CRC-32 mismatch in record 'data/3'"
conv --input "$t/bad" --output "$t/bad-out" --parts 3 --part 0 || fail "bad part 0 failed"
conv --input "$t/bad" --output "$t/bad-out" --parts 3 --part 1 || fail "bad part 1 failed"
expect 1 conv --input "$t/bad" --output "$t/bad-out" --parts 3 --part 2
has stderr "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt: CRC-32 mismatch in record 'data/3'"
[ ! -e "$t/bad-out" ] || fail "a job reading a corrupt record was published"

# Records name their job: a folder whose job.json is gone (a cleanup cut short) is refused, so a
# stale part of another dtype is never mixed in; --force clears it, and says so.
expect 0 conv --input "$in" --output "$t/mix" --parts 2 --part 1 --dtype fp32
rm "$t/.mix.weld-parts/job.json"
expect 1 conv --input "$in" --output "$t/mix" --parts 2 --part 0 --dtype fp16
has stderr "weld: error: $t/.mix.weld-parts: parts of an unknown job (its job.json is gone, as when a cleanup was interrupted); --force discards them"
[ ! -e "$t/mix" ] || fail "a folder without job.json was published"
expect 0 "$weld" convert --device cpu --input "$in" --output "$t/mix" --parts 2 --part 0 --dtype fp16 --force
has stderr "discarded the parts of another multi-part conversion into this folder (--force)"
has stderr "part 0 of 2 recorded; the output is published when part 1 is too"
expect 0 conv --input "$in" --output "$t/mix" --parts 2 --part 1 --dtype fp16
conv --input "$in" --output "$t/ref-fp16" --dtype fp16 || fail "fp16 reference failed"
same "$t/ref-fp16" "$t/mix" || fail "fp16 parts after a discarded job differ from one process"
# A record of another job (same input and options, another id) is refused by the publisher.
conv --input "$in" --output "$t/own" --parts 2 --part 0 || fail "own part 0 failed"
conv --input "$in" --output "$t/foreign" --parts 2 --part 0 || fail "foreign part 0 failed"
cp "$t/.foreign.weld-parts/part-0" "$t/.own.weld-parts/part-0"
touch "$t/.own.weld-parts/publish.claim"
expect 0 conv --input "$in" --output "$t/own" --parts 2 --part 1
id=$(sed 's/.*"id":"\([0-9a-f]*\)".*/\1/' "$t/.own.weld-parts/job.json")
expect 1 "$weld" convert --finish --output "$t/own"
has stderr "weld: error: $t/.own.weld-parts/part-0: the record of another job (not job $id); run part 0 again"
# ... and that part, run again, replaces it (its record is not this job's, so it writes again).
rm "$t/.own.weld-parts/publish.claim"
expect 0 conv --input "$in" --output "$t/own" --parts 2 --part 0
same "$t/ref-0" "$t/own" || fail "the job with a replaced foreign record differs from one process"

# A whole conversion with --force discards an unfinished job, and says so.
expect 0 conv --input "$in" --output "$t/wh" --parts 2 --part 0
expect 0 "$weld" convert --device cpu --input "$in" --output "$t/wh" --force
has stderr "discarded the parts of an unfinished multi-part conversion into this folder (--force)"
same "$t/ref-0" "$t/wh" || fail "a whole conversion over a discarded job differs from one process"
[ "$(ls -A "$t" | grep -c '^\.wh')" = 0 ] || fail "the discarded job left $(ls -A "$t" | grep '^\.wh')"

# A record must hold exactly its part's ranges: a cut moved by one element in both records (still
# covering every tensor once) is refused.
conv --input "$in" --output "$t/rng" --parts 2 --part 0 || fail "rng part 0 failed"
touch "$t/.rng.weld-parts/publish.claim"
conv --input "$in" --output "$t/rng" --parts 2 --part 1 || fail "rng part 1 failed"
read -r _ a _ c _ < <(grep '^t ' "$t/.rng.weld-parts/part-0" | tail -1)
for r in part-0 part-1; do
	awk -v a="$a" -v c="$c" '$1 == "t" && $2 == a { if ($4 == c) $4 = c - 1; else if ($3 == c) $3 = c - 1 } 1' \
		"$t/.rng.weld-parts/$r" >"$t/rec" && mv "$t/rec" "$t/.rng.weld-parts/$r"
done
grep -q "^t $a [0-9]* $((c - 1)) " "$t/.rng.weld-parts/part-0" && grep -q "^t $a $((c - 1)) " "$t/.rng.weld-parts/part-1" ||
	fail "the records were not edited (no test)"
expect 1 "$weld" convert --finish --output "$t/rng"
has stderr "weld: error: $t/.rng.weld-parts/part-0: not a part record of this job (malformed or cut short)"

# A weights file gone from the parts folder is never made again (empty): parts and --finish name it.
conv --input "$in" --output "$t/gone" --parts 2 --part 0 || fail "gone part 0 failed"
w=model.safetensors
rm "$t/.gone.weld-parts/$w"
expect 1 conv --input "$in" --output "$t/gone" --parts 2 --part 1
has stderr "weld: error: $t/.gone.weld-parts/$w: missing, with parts recorded: their bytes are lost; remove the parts folder and run every part again"
conv --input "$in" --output "$t/gone2" --parts 2 --part 0 || fail "gone2 part 0 failed"
touch "$t/.gone2.weld-parts/publish.claim"
conv --input "$in" --output "$t/gone2" --parts 2 --part 1 || fail "gone2 part 1 failed"
rm "$t/.gone2.weld-parts/$w"
expect 1 "$weld" convert --finish --output "$t/gone2"
has stderr "weld: error: $t/.gone2.weld-parts/$w: missing, with parts recorded: their bytes are lost; remove the parts folder and run every part again"
[ ! -e "$t/gone2" ] || fail "a job missing a weights file was published"

# --finish --force takes over a lock left by a publisher on another host.
conv --input "$in" --output "$t/fl" --parts 2 --part 0 || fail "fl part 0 failed"
touch "$t/.fl.weld-parts/publish.claim"
conv --input "$in" --output "$t/fl" --parts 2 --part 1 || fail "fl part 1 failed"
echo "weld-lock host=other-node-3 pid=4242 start=1 since=0" >"$t/.fl.weld-lock"
# (Without --force --finish waits a minute for it, as for a part on another host: not tested here.)
expect 0 "$weld" convert --finish --output "$t/fl" --force
has stderr "took over the lock of a conversion that no longer runs"
same "$t/ref-0" "$t/fl" || fail "--finish --force differs from one process"

# One part rerun with --force is still the job's: the other parts' records stay.
expect 0 conv --input "$in" --output "$t/rf" --parts 3 --part 0
expect 0 "$weld" convert --device cpu --input "$in" --output "$t/rf" --parts 3 --part 1 --force
has stderr "weld: note: part 1 of 3 recorded; the output is published when part 2 is too"
[ -e "$t/.rf.weld-parts/part-0" ] || fail "--force on one part discarded another part's record"
expect 0 conv --input "$in" --output "$t/rf" --parts 3 --part 2
same "$t/ref-0" "$t/rf" || fail "a job with a part rerun with --force differs from one process"

# An input file changed between parts (same layout) is refused, named; --finish names it too.
cp -r "$in" "$t/src5"
chmod -R u+w "$t/src5"
f=$(realpath "$(ls "$t"/src5/*.safetensors | head -1)")
expect 0 conv --input "$t/src5" --output "$t/chg" --parts 2 --part 0
touch -d '2001-01-01 00:00:00' "$f"
expect 1 conv --input "$t/src5" --output "$t/chg" --parts 2 --part 1
has stderr "weld: error: $t/.chg.weld-parts: $f changed (size, modification time or inode) since other parts of this job read it; --force discards their work"
expect 0 conv --input "$t/src5" --output "$t/chg2" --parts 2 --part 0
touch "$t/.chg2.weld-parts/publish.claim"
expect 0 conv --input "$t/src5" --output "$t/chg2" --parts 2 --part 1
touch -d '2002-01-01 00:00:00' "$f"
expect 1 "$weld" convert --finish --output "$t/chg2"
has stderr "weld: error: $t/.chg2.weld-parts/job.json: $f changed (size, modification time or inode) since the parts read it"

# A part already recorded is not written again when rerun: it goes straight to the publish.
expect 0 conv --input "$in" --output "$t/again" --parts 2 --part 0
expect 0 "$weld" convert --device cpu --input "$in" --output "$t/again" --parts 2 --part 0
has stderr "part 0 was already recorded"
has stderr "part 0 of 2 recorded; the output is published when part 1 is too"
touch "$t/.again.weld-parts/publish.claim"
expect 0 conv --input "$in" --output "$t/again" --parts 2 --part 1
expect 0 "$weld" convert --device cpu --input "$in" --output "$t/again" --parts 2 --part 1
has stderr "part 1 was already recorded"
has stderr "another part publishes the output"
expect 0 "$weld" convert --finish --output "$t/again" --quiet
same "$t/ref-0" "$t/again" || fail "a job with parts rerun differs from one process"

# Usage: --part without --parts, a part out of range, Slurm's variables as the defaults.
expect 2 "$weld" convert --input "$in" --output "$t/u" --part 1
has stderr "--part needs --parts"
expect 2 "$weld" convert --input "$in" --output "$t/u" --parts 3 --part 3
has stderr "--part must be a number from 0 to 2, not '3'"
expect 2 "$weld" convert --input "$in" --output "$t/u" --parts 3
has stderr "--parts 3 needs --part I (0 to 2)"
expect 0 env SLURM_NTASKS=2 SLURM_PROCID=1 "$weld" convert --device cpu --input "$in" --output "$t/env"
has stderr "part 1 of 2 recorded"
expect 0 env SLURM_NTASKS=2 SLURM_PROCID=0 "$weld" convert --device cpu --input "$in" --output "$t/env" --quiet
same "$t/ref-0" "$t/env" || fail "SLURM_NTASKS/SLURM_PROCID parts differ from one process"
# --parts 1 forces one process inside a Slurm step of several tasks.
expect 0 env SLURM_NTASKS=4 SLURM_PROCID=3 "$weld" convert --device cpu --quiet --input "$in" --output "$t/one" --parts 1
same "$t/ref-0" "$t/one" || fail "--parts 1 under SLURM_NTASKS=4 was not a whole run"

[ "$fails" -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "parts: all checks passed"
