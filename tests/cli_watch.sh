#!/usr/bin/env bash
# weld watch beside a "training run" this script writes the way the writers
# do, file by file with pauses: an HF Trainer checkpoint-N with
# trainer_state.json last, a DeepSpeed tag then `latest`, a plain HF folder
# shard by shard (each shard in two halves), a DCP's .distcp files then
# .metadata, a .bin folder seen complete only on a second look (--once).
# Every complete checkpoint is
# converted once, after its last file and never before, byte for byte as
# weld batch converts it; a restart converts nothing again; --exec and
# --keep-last do what they say; SIGTERM and a checkpoint removed mid-way
# leave no staging; the polling path works with inotify off.
# Usage: cli_watch.sh WELD SOURCE_DIR
set -u
weld=$(readlink -f "$1")
fx=$(readlink -f "$2")/tests/fixtures
fails=0
t=$(mktemp -d)
out=$t
. "$(dirname "$0")/lib.sh"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$t"' EXIT
run=$t/run
o=$t/out
log=$t/log
mkdir -p "$run"

# mark TEXT: a line in the watcher's log, in order with its own lines (both append).
mark() { echo "MARK $*" >>"$log"; }
# copy_slowly SRC DST [SKIP]: SRC's files into DST one by one, pausing, all but SKIP.
copy_slowly() {
	local src=$1 dst=$2 skip=${3:-} f
	mkdir -p "$dst"
	(cd "$src" && find . -type f | sort) | while read -r f; do
		[ "${f#./}" = "$skip" ] && continue
		mkdir -p "$dst/$(dirname "$f")"
		cp "$src/$f" "$dst/$f"
		sleep 0.1
	done
}
# not_yet NAME STEP: nothing of checkpoint NAME's output (step STEP) exists, nor was it opened for conversion.
not_yet() {
	[ ! -e "$o/run_step_$2" ] || fail "$1 was published before its last file was written"
	! ls -A "$o" 2>/dev/null | grep -q "^\.run_step_$2\.weld-stage" || fail "$1 was being converted before its last file was written"
	! grep -q "^$1: converting" "$log" || fail "$1 was opened for conversion before its last file was written"
}
# wait_for FILE: until FILE exists (20 s at most).
wait_for() {
	for _ in $(seq 1 200); do
		[ -e "$1" ] && return 0
		sleep 0.1
	done
	fail "$1 never appeared"
}

# 1. A live run, inotify on and a 30 s poll: only inotify can make it prompt.
"$weld" watch --input-dir "$run" --output-dir "$o" --poll 30 --device cpu --threads 1 --until-file "$t/done" \
	--exec 'echo "$WELD_STEP $WELD_OUTPUT" >>'"$t/exec.log"'; exit 3' >>"$log" 2>&1 &
wpid=$!
pids+=("$wpid")
sleep 0.5
# HF Trainer + DeepSpeed: weights, global_stepN, latest, RNG ..., trainer_state.json last.
for n in 1 2; do
	copy_slowly "$fx/trainer/z2_untied/checkpoint-$n" "$run/checkpoint-$n" trainer_state.json
	sleep 1.2
	not_yet "checkpoint-$n" "$n"
	mark "checkpoint-$n last file"
	cp "$fx/trainer/z2_untied/checkpoint-$n/trainer_state.json" "$run/checkpoint-$n/"
	wait_for "$o/run_step_$n"
done
# DeepSpeed alone: the tag's files, then `latest`.
copy_slowly "$fx/zero/s2_w2_bf16/global_step1" "$run/global_step3"
sleep 1.2
not_yet global_step3 3
mark "global_step3 last file"
echo global_step3 >"$run/latest"
wait_for "$o/run_step_3"
# A plain HF folder: config, index, then each shard in two halves.
hf=$fx/qwen2_tied/st_sharded
mkdir "$run/step_4"
cp "$hf/config.json" "$hf/generation_config.json" "$hf/model.safetensors.index.json" "$run/step_4/"
shards=$(cd "$hf" && ls model-*.safetensors)
for s in $shards; do
	size=$(stat -c %s "$hf/$s")
	head -c $((size / 2)) "$hf/$s" >"$run/step_4/$s"
	sleep 0.3
	not_yet step_4 4
	[ "$s" = "$(echo "$shards" | tail -1)" ] && mark "step_4 last file"
	tail -c +$((size / 2 + 1)) "$hf/$s" >>"$run/step_4/$s"
done
wait_for "$o/run_step_4"
touch "$t/done"
wait "$wpid"
rc=$?
[ $rc -eq 0 ] || fail "watch --until-file exited $rc: $(tail -3 "$log")"
grep -q "^weld watch: watching $run -> $o: inotify, a look every 30 s; low priority (nice 10, I/O best-effort 7), 1 thread; until $t/done$" "$log" ||
	fail "start line: $(head -1 "$log")"
last log "weld watch: 4 converted, 0 already done, 0 abandoned, 0 failed, 0 incomplete"
# Each converted once, only after its last file was written (the marks and the log lines are in one file, in order).
for c in checkpoint-1:1 checkpoint-2:2 global_step3:3 step_4:4; do
	name=${c%%:*}
	[ "$(grep -c "^$name: published $o/run_step_${c##*:} " "$log")" = 1 ] || fail "$name not published exactly once"
	first=$(grep -n "^$name: converting\|^MARK $name last file" "$log" | head -1 | cut -d: -f2-)
	[ "$first" = "MARK $name last file" ] || fail "$name converted before its last file: $first"
done
grep -q "^checkpoint-1: complete: trainer_state.json written" "$log" || fail "checkpoint-1: no word of why it is complete"
grep -q "^global_step3: complete: named by latest" "$log" || fail "global_step3: no word of why it is complete"
grep -q "^step_4: complete: every shard at its final size" "$log" || fail "step_4: no word of why it is complete"
# Byte for byte weld batch's outputs, weld.json included.
"$weld" batch --input-dir "$run" --output-dir "$t/ref" --all-checkpoints --device cpu --quiet 2>/dev/null ||
	fail "batch of the same run failed"
diff -r "$o" "$t/ref" >/dev/null || fail "watch's outputs differ from batch's: $(diff -rq "$o" "$t/ref" | head -3)"
# --exec: after each publish, with the output; its failure (exit 3) reported, not fatal.
printf '%s\n' "1 $o/run_step_1" "2 $o/run_step_2" "3 $o/run_step_3" "4 $o/run_step_4" >"$t/exec.want"
cmp -s "$t/exec.log" "$t/exec.want" || fail "--exec ran: $(cat "$t/exec.log")"
[ "$(grep -c "^.*: --exec failed (exit 3); watching on$" "$log")" = 4 ] || fail "--exec's failure not reported"

# 2. A restart resumes: everything verifies, nothing is converted again.
stamp=$(stat -c %Y.%i "$o"/run_step_*/model.safetensors)
expect 0 "$weld" watch --input-dir "$run" --output-dir "$o" --once --device cpu
last stderr "weld watch: 0 converted, 4 already done, 0 abandoned, 0 failed, 0 incomplete"
[ "$(stat -c %Y.%i "$o"/run_step_*/model.safetensors)" = "$stamp" ] || fail "a restart rewrote outputs"

# 3. --keep-last 2: the two newest stay; of the older, one that does not verify is kept.
(cd "$run" && find . -type f -exec md5sum {} + | sort) >"$t/inputs.before"
printf 'X' | dd of="$o/run_step_1/model.safetensors" bs=1 seek=100 conv=notrunc status=none
expect 0 "$weld" watch --input-dir "$run" --output-dir "$o" --once --keep-last 2 --checkpoint-filter step_4 --device cpu
[ ! -e "$o/run_step_2" ] && [ -d "$o/run_step_3" ] && [ -d "$o/run_step_4" ] || fail "--keep-last 2 left $(ls "$o")"
[ -d "$o/run_step_1" ] || fail "--keep-last removed an output that does not verify"
has stderr "weld watch: removed $o/run_step_2 (--keep-last 2)"
has stderr "weld watch: kept $o/run_step_1 beyond --keep-last 2: "
[ -z "$(ls -A "$o" | grep '^\.')" ] || fail "--keep-last left $(ls -A "$o" | grep '^\.')"
(cd "$run" && find . -type f -exec md5sum {} + | sort) | cmp -s - "$t/inputs.before" || fail "--keep-last touched an input"

# The conversions get a small share of the GPU (training holds the rest): 2048 MiB unless the
# user's environment or --gpu-memory says otherwise (what each conversion, and --exec, inherits).
gpu() {
	rm -rf "$t/gpu_out"
	"$weld" watch --input-dir "$run" --output-dir "$t/gpu_out" --once --device cpu --checkpoint-filter checkpoint-1 \
		--exec 'echo "$WELD_GPU_MEMORY_MB" >>'"$t/gpu.log" "$@" 2>/dev/null
}
gpu && WELD_GPU_MEMORY_MB=4096 gpu && WELD_GPU_MEMORY_MB=4096 gpu --gpu-memory 512
printf '%s\n' 2048 4096 512 | cmp -s - "$t/gpu.log" || fail "GPU budgets: $(cat "$t/gpu.log")"
expect 2 "$weld" watch --input-dir "$run" --output-dir "$o" --gpu-memory 0
has stderr "weld: watch: --gpu-memory must be a whole number of MiB from 1 to 16777216"

# --until-step: the watcher ends, after a last look, once squeue no longer lists the training's job
# step. A stand-in squeue on PATH lists step 4242.0 while $t/training exists (the real one: the
# slurm tier). A checkpoint written just before the step ends is still converted.
mkdir -p "$t/bin" && touch "$t/training"
cat >"$t/bin/squeue" <<SQ
#!/bin/sh
echo "\$*" >>"$t/squeue.args"
[ -e "$t/training" ] && printf '4242.0\n4242.batch\n' || echo 4242.batch
SQ
chmod +x "$t/bin/squeue"
rm -rf "$t/step_out"
PATH=$t/bin:$PATH "$weld" watch --input-dir "$run" --output-dir "$t/step_out" --poll 1 --no-inotify --device cpu \
	--checkpoint-filter checkpoint-1 --until-step 4242.0 2>"$t/step.log" &
spid=$!
pids+=("$spid")
sleep 3
kill -0 $spid 2>/dev/null || fail "--until-step ended while its step was listed: $(tail -2 "$t/step.log")"
rm "$t/training"
wait $spid
[ $? -eq 0 ] || fail "--until-step exited non-zero: $(tail -2 "$t/step.log")"
[ -f "$t/step_out/run_step_1/model.safetensors" ] || fail "--until-step converted nothing"
grep -q -- "-h -s -j 4242 -o %i" "$t/squeue.args" || fail "squeue asked: $(head -1 "$t/squeue.args")"
expect 2 "$weld" watch --input-dir "$run" --output-dir "$o" --until-step '4242.0;reboot'
has stderr "weld: watch: --until-step must be a Slurm JOB.STEP (e.g. 1234.0), not '4242.0;reboot'"

# 4. SIGTERM mid-conversion: exit 143, no staging, no output.
big=$t/bigrun
sparse_input "$big/step_7" 256
"$weld" watch --input-dir "$big" --output-dir "$t/bo" --poll 1 --device cpu --threads 1 --chunk-bytes 4096 2>"$t/sigterm" &
wpid=$!
pids+=("$wpid")
wait_staging "$t/bo" bigrun_step_7
kill -TERM "$wpid"
wait "$wpid"
[ $? -eq 143 ] || fail "SIGTERM did not give 143"
grep -q "^weld: interrupted by SIGTERM; the output folder is as it was$" "$t/sigterm" || fail "SIGTERM message: $(tail -2 "$t/sigterm")"
[ -z "$(ls -A "$t/bo")" ] || fail "SIGTERM left $(ls -A "$t/bo")"

# 5. A checkpoint rotated away mid-conversion is abandoned and reported; the watch goes on (exit 0).
"$weld" watch --input-dir "$big" --output-dir "$t/bo" --once --device cpu --threads 1 --chunk-bytes 4096 2>"$t/gone" &
wpid=$!
pids+=("$wpid")
wait_staging "$t/bo" bigrun_step_7
rm -rf "$big/step_7"
wait "$wpid"
[ $? -eq 0 ] || fail "a checkpoint removed mid-conversion was fatal: $(tail -2 "$t/gone")"
grep -q "^step_7: removed while being converted (save_total_limit?); abandoned, nothing published" "$t/gone" ||
	fail "no word of the abandoned checkpoint: $(tail -3 "$t/gone")"
last gone "weld watch: 0 converted, 0 already done, 1 abandoned, 0 failed, 0 incomplete"
[ -z "$(ls -A "$t/bo")" ] || fail "the abandoned conversion left $(ls -A "$t/bo")"

# 6. The polling path: inotify off, a 1 s poll; a SIGINT while idle gives 130.
prun=$t/prun
mkdir -p "$prun"
: >"$log"
WELD_WATCH_NO_INOTIFY=1 "$weld" watch --input-dir "$prun" --output-dir "$t/po" --poll 1 --device cpu --threads 1 >>"$log" 2>&1 &
wpid=$!
pids+=("$wpid")
copy_slowly "$fx/trainer/z2_untied/checkpoint-2" "$prun/checkpoint-2" trainer_state.json
sleep 2.2
not_yet checkpoint-2 2
mark "checkpoint-2 last file"
cp "$fx/trainer/z2_untied/checkpoint-2/trainer_state.json" "$prun/checkpoint-2/"
wait_for "$t/po/prun_step_2"
# torchtitan's DCP step-N: every rank's .distcp, then .metadata.
copy_slowly "$fx/dcp/titan_2d/step-3" "$prun/step-5" .metadata
sleep 2.2
not_yet step-5 5
mark "step-5 last file"
cp "$fx/dcp/titan_2d/step-3/.metadata" "$prun/step-5/"
wait_for "$t/po/prun_step_5"
sleep 0.3
kill -INT "$wpid"
wait "$wpid"
[ $? -eq 130 ] || fail "SIGINT while waiting did not give 130"
grep -q "^weld watch: watching $prun -> $t/po: no inotify, a look every 1 s" "$log" || fail "polling start line: $(head -1 "$log")"
cmp -s "$t/po/prun_step_2/model.safetensors" "$t/ref/run_step_2/model.safetensors" || fail "the polled conversion differs"
cmp -s "$t/po/prun_step_5/model.safetensors" "$fx/dcp/titan_2d/oracle/step-3.bf16.safetensors" || fail "the DCP conversion differs from torch's"
for name in checkpoint-2 step-5; do
	first=$(grep -n "^$name: converting\|^MARK $name last file" "$log" | head -1 | cut -d: -f2-)
	[ "$first" = "MARK $name last file" ] || fail "$name converted before its last file: $first"
done
grep -q "^step-5: complete: .metadata written" "$log" || fail "step-5: no word of why it is complete"

# .bin shards say nothing of their final size: --once converts them after a second look at the same sizes.
make_run "$t/brun" qwen2_tied/bin_sharded:step_6
expect 0 "$weld" watch --input-dir "$t/brun" --output-dir "$t/bno" --once --device cpu
has stderr "step_6: complete: shard sizes unchanged since the last look"
"$weld" convert --input "$t/brun/step_6" --output "$t/bref" --device cpu --quiet
cmp -s "$t/bno/brun_step_6/model.safetensors" "$t/bref/model.safetensors" || fail "the .bin folder's conversion differs"

# 7. A complete checkpoint that does not convert: reported, not abandoned, and the exit code says so.
mkdir -p "$t/frun/checkpoint-9"
echo '{}' >"$t/frun/checkpoint-9/trainer_state.json"
expect 1 "$weld" watch --input-dir "$t/frun" --output-dir "$t/fo" --once --device cpu
grep -q "^checkpoint-9: error: .*; tried again when its files change$" "$out/stderr" || fail "failure message: $(cat "$out/stderr")"
last stderr "weld watch: 0 converted, 0 already done, 0 abandoned, 1 failed, 0 incomplete"

# Usage errors.
expect 2 "$weld" watch --input-dir "$run" --output-dir "$run/out"
has stderr "--output-dir is inside --input-dir"
expect 2 "$weld" watch --input-dir "$run" --output-dir "$o" --poll 0
expect 2 "$weld" watch --input-dir "$run" --output-dir "$o" --priority high

if [ "$fails" -ne 0 ]; then
	echo "$fails watch check(s) failed"
	exit 1
fi
echo "all watch checks passed"
