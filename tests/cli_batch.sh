#!/usr/bin/env bash
# weld batch on a run folder made of real fixture checkpoints (HF and ZeRO):
# all / latest / filters / dry-run / skip-existing / a broken checkpoint among
# good ones / Slurm array indexes / SIGTERM mid-conversion and a rerun that
# completes to exactly the bytes of an uninterrupted run.
# Usage: cli_batch.sh WELD SOURCE_DIR
set -u
weld=$1
fx=$2/tests/fixtures
fails=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
. "$(dirname "$0")/lib.sh"
run=$t/myrun
make_run "$run" qwen2_tied/st_sharded:checkpoint-2 zero/s2_w2_bf16:checkpoint-5 zero/s3_w2_bf16_all:checkpoint-10
# b: quiet (errors and the results table only); bl: with each checkpoint's log lines.
bl() { "$weld" batch --input-dir "$run" --device cpu "$@"; }
b() { bl --quiet "$@"; }

# --help: --json, the step names, the clash rule, the dtype aliases, and the exit codes last.
"$weld" batch --help >"$t/help" || fail "batch --help failed"
for want in "--json" "checkpoint-N, global_stepN," "step_N, step-N or iter_N, N all digits" \
	"refused before anything is written, --force or not" "alias bf16" "float16 (fp16), float32 (fp32)" "exit codes:"; do
	grep -qF -- "$want" "$t/help" || fail "batch --help lacks '$want'"
done
tail -1 "$t/help" | grep -q "143 SIGTERM$" || fail "batch --help does not end with the exit codes"

# Counting and planning write nothing.
[ "$(b --dry-run --count --all-checkpoints)" = 3 ] || fail "--count --all-checkpoints is not 3"
[ "$(b --dry-run --count)" = 1 ] || fail "--count without --all-checkpoints is not 1 (the latest)"
[ "$(b --dry-run --count --all-checkpoints --checkpoint-filter 'checkpoint-1*' --checkpoint-filter 'checkpoint-2')" = 2 ] ||
	fail "two filters should select 2"
b --output-dir "$t/out" --dry-run --all-checkpoints >"$t/plan" 2>"$t/err" || fail "dry run failed: $(cat "$t/err")"
[ ! -e "$t/out" ] || fail "--dry-run wrote $t/out"
[ ! -s "$t/err" ] || fail "the dry run wrote to stderr: $(cat "$t/err")"
# The plan, field by field: a header, one row per checkpoint with each column
# starting (left-aligned) or ending (right-aligned) where its header does, and
# the totals. The byte counts are weld_convert's dry-run numbers.
python3 - "$t/plan" "$t/out" <<'PY' || fail "dry-run table: $(cat "$t/plan")"
import sys
lines = open(sys.argv[1]).read().split("\n")
assert lines[-1] == "" and len(lines) == 6, lines
head, rows, total = lines[0], lines[1:4], lines[4]
cols = ["INDEX", "NAME", "STEP", "TYPE", "OUTPUT", "READ", "WRITE"]
assert head.split() == cols, head
out = sys.argv[2]
want = [["0", "checkpoint-2", "2", "safetensors-sharded", out + "/myrun_step_2", "501.2 kB", "253.3 kB"],
        ["1", "checkpoint-5", "5", "deepspeed", out + "/myrun_step_5", "6.9 kB", "4.3 kB"],
        ["2", "checkpoint-10", "10", "deepspeed", out + "/myrun_step_10", "5.1 kB", "3.6 kB"]]
for row, w in zip(rows, want):
    assert len(row) == len(head), ("not as wide as the header", row)
    for h, v in zip(cols, w):
        # Numbers end where their header ends; words start where it starts; two spaces between columns.
        at = head.index(h) + len(h) - len(v) if h in ("INDEX", "STEP", "READ", "WRITE") else head.index(h)
        assert row[at:at + len(v)] == v and row[at - 2:at].strip() == "", (h, v, row)
assert total == "weld batch: 3 checkpoints, 513.2 kB to read, 261.2 kB to write, 0 failed", total
PY

# --json: one object on stdout and nothing else (json.load refuses trailing
# text), with the table's fields as numbers, step null when there is none.
b --output-dir "$t/out" --dry-run --all-checkpoints --json >"$t/json" 2>"$t/err" || fail "dry-run --json failed: $(cat "$t/err")"
python3 - "$t/json" "$t/out" "$run" <<'PY' || fail "dry-run JSON: $(cat "$t/json")"
import json, sys
j = json.load(open(sys.argv[1]))
out = sys.argv[2]
assert set(j) == {"run", "name", "output_dir", "dry_run", "checkpoints", "clashes", "totals"}, j.keys()
assert (j["run"], j["name"], j["output_dir"], j["dry_run"], j["clashes"]) == (sys.argv[3], "myrun", out, True, []), j
want = [(0, "checkpoint-2", 2, "safetensors-sharded", 501248, 253304), (1, "checkpoint-5", 5, "deepspeed", 6924, 4270),
        (2, "checkpoint-10", 10, "deepspeed", 5064, 3578)]
assert len(j["checkpoints"]) == 3
for c, (i, name, step, kind, rd, wr) in zip(j["checkpoints"], want):
    assert set(c) == {"index", "name", "step", "type", "output", "bytes_read", "bytes_written", "result", "seconds", "clash"}, c
    assert (c["index"], c["name"], c["step"], c["type"], c["bytes_read"], c["bytes_written"]) == (i, name, step, kind, rd, wr), c
    assert (c["output"], c["result"], c["clash"]) == ("%s/myrun_step_%d" % (out, step), "planned", False), c
    assert 0 <= c["seconds"] < 60, c
assert j["totals"] == {"count": 3, "bytes_read": 513236, "bytes_written": 261152, "failed": 0}, j["totals"]
PY
[ ! -e "$t/out" ] || fail "--dry-run --json wrote $t/out"
b --dry-run --count --json >/dev/null 2>&1
[ $? -eq 2 ] || fail "--count --json is not a usage error"

# Latest only, by default.
b --output-dir "$t/out" >"$t/log" 2>"$t/err" || fail "latest conversion failed"
[ -f "$t/out/myrun_step_10/model.safetensors" ] && [ ! -e "$t/out/myrun_step_5" ] || fail "latest converted the wrong checkpoint"
# The results table is a log: on stderr, not stdout.
grep -q "^weld batch: 1 checkpoint, [0-9.]* kB read, 3.6 kB written, 0 failed$" "$t/err" || fail "summary line: $(tail -1 "$t/err")"
grep -q "^ *0  checkpoint-10  *10  deepspeed  *$t/out/myrun_step_10  *done  *[0-9.]*$" "$t/err" || fail "results table: $(cat "$t/err")"
! grep -q "weld batch:\|INDEX" "$t/log" || fail "the results table went to stdout"

# All, with --skip-existing: the latest is skipped because its manifest verifies.
b --output-dir "$t/out" --all-checkpoints --skip-existing --name m >"$t/log" 2>&1 || fail "all failed"
bl --output-dir "$t/out" --all-checkpoints --skip-existing >"$t/log" 2>&1 || fail "all (myrun) failed"
grep -q "^checkpoint-10: skipped: $t/out/myrun_step_10 verifies" "$t/log" || fail "no skip: $(cat "$t/log")"
for s in 2 5 10; do
	[ -f "$t/out/myrun_step_$s/weld.json" ] || fail "myrun_step_$s missing"
	[ -f "$t/out/m_step_$s/model.safetensors" ] || fail "--name m: m_step_$s missing"
done
cmp -s "$t/out/myrun_step_2/model.safetensors" "$fx/qwen2_tied/st_single_bf16_reference/model.safetensors" ||
	fail "checkpoint-2's output is not transformers' bf16 file"
# A corrupted output no longer verifies: --skip-existing converts it again.
printf 'X' | dd of="$t/out/myrun_step_5/model.safetensors" bs=1 seek=200 conv=notrunc status=none
bl --output-dir "$t/out" --all-checkpoints --skip-existing >"$t/log" 2>&1 || fail "reconvert failed"
grep -q "^checkpoint-5: done in .* s: 11 tensors" "$t/log" || fail "the corrupted output was skipped"
grep -qx "checkpoint-5: $t/out/myrun_step_5/model.safetensors: CRC-32 0x[0-9a-f]\{8\}, the manifest says 0x[0-9a-f]\{8\}; converting $run/checkpoint-5 into it again" "$t/log" ||
	fail "no word of why the corrupted output is redone: $(cat "$t/log")"
# So is one an older weld left when killed between its weights and its manifest:
# new weights, no weld.json. No --force needed, and nothing of it survives.
rm "$t/out/myrun_step_2/weld.json"
echo stale >"$t/out/myrun_step_2/old-notes.txt"
bl --output-dir "$t/out" --all-checkpoints --skip-existing >"$t/log" 2>&1 || fail "redo without a manifest failed"
grep -q "^checkpoint-2: done in .* s: 26 tensors" "$t/log" || fail "the output without a manifest was skipped: $(cat "$t/log")"
grep -qxF "checkpoint-2: $t/out/myrun_step_2/weld.json: cannot open: No such file or directory; converting $run/checkpoint-2 into it again" "$t/log" ||
	fail "no word of why the output without a manifest is redone: $(cat "$t/log")"
[ -f "$t/out/myrun_step_2/weld.json" ] && [ ! -e "$t/out/myrun_step_2/old-notes.txt" ] || fail "the redone output is not whole"
# An output locked by a conversion on another node is not taken over, however broken it looks.
rm "$t/out/myrun_step_5/weld.json"
echo "weld-lock host=other-node-3 pid=4242 start=1 since=0" >"$t/out/.myrun_step_5.weld-lock"
b --output-dir "$t/out" --all-checkpoints --skip-existing >"$t/log" 2>"$t/err" && fail "another node's lock was taken over"
grep -q "^checkpoint-5: error: $t/out/.myrun_step_5.weld-lock: locked by process 4242 on host other-node-3 since " "$t/err" ||
	fail "foreign lock message: $(cat "$t/err")"
rm "$t/out/.myrun_step_5.weld-lock"
bl --output-dir "$t/out" --all-checkpoints --skip-existing >"$t/log" 2>&1 || fail "redo after the lock went failed"
grep -q "^checkpoint-5: done in .* s: 11 tensors" "$t/log" && grep -q "^checkpoint-2: skipped" "$t/log" || fail "redo: $(cat "$t/log")"

# Two runs whose checkpoints share a folder name (e1/output/checkpoint-1 and
# e2/output/checkpoint-1, other models) map to one output with the default
# name: OUT/output_step_1. weld.json records the input resolved
# (source_path), so --skip-existing converts e2's into it again rather than
# skip e1's output as if it were e2's, and says so.
make_run "$t/e1/output" qwen2_tied/st_sharded:checkpoint-1
make_run "$t/e2/output" zero/s2_w2_bf16:checkpoint-1
e1=$(realpath "$t/e1/output/checkpoint-1") e2=$(realpath "$t/e2/output/checkpoint-1")
source_path() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_path"])' "$1/weld.json"; }
"$weld" batch --input-dir "$t/e1/output" --output-dir "$t/shared" --device cpu --quiet 2>"$t/err" || fail "e1: $(cat "$t/err")"
[ "$(source_path "$t/shared/output_step_1")" = "$e1" ] ||
	fail "weld.json's source_path is not $e1: $(cat "$t/shared/output_step_1/weld.json")"
"$weld" batch --input-dir "$t/e2/output" --output-dir "$t/shared" --device cpu --skip-existing >"$t/log" 2>"$t/err" ||
	fail "e2: $(cat "$t/err")"
grep -qxF "checkpoint-1: $t/shared/output_step_1: made from $e1; converting $t/e2/output/checkpoint-1 into it again" "$t/err" &&
	grep -q "^ *0  checkpoint-1  *1  deepspeed  *$t/shared/output_step_1  done  " "$t/err" ||
	fail "e2 over e1's output: $(cat "$t/err")"
"$weld" convert --input "$t/e2/output/checkpoint-1" --output "$t/e2ref" --device cpu --quiet || fail "e2 reference failed"
cmp -s "$t/shared/output_step_1/model.safetensors" "$t/e2ref/model.safetensors" || fail "OUT/output_step_1 is not e2's model"
# The same input by another path (relative, through a link) is the same source: skipped.
ln -s e2 "$t/e2link"
(cd "$t" && "$weld" batch --input-dir e2link/output --output-dir shared --device cpu --skip-existing) >"$t/log" 2>"$t/err" ||
	fail "e2 by a link: $(cat "$t/err")"
grep -qxF "checkpoint-1: skipped: shared/output_step_1 verifies" "$t/err" || fail "e2 by a link was not skipped: $(cat "$t/err")"
# weld.json without source_path (an older weld's) says nothing of its source: redone, saying so, even when it is e2's.
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); del j["source_path"]; json.dump(j, open(sys.argv[1], "w"))' \
	"$t/shared/output_step_1/weld.json"
"$weld" batch --input-dir "$t/e2/output" --output-dir "$t/shared" --device cpu --skip-existing >"$t/log" 2>"$t/err" ||
	fail "e2 over an older weld.json: $(cat "$t/err")"
grep -qxF "checkpoint-1: $t/shared/output_step_1: made from an unknown source (its weld.json, by an older weld, has no source_path); converting $t/e2/output/checkpoint-1 into it again" "$t/err" &&
	[ "$(source_path "$t/shared/output_step_1")" = "$e2" ] ||
	fail "e2 over an older weld.json: $(cat "$t/err")"

# Slurm array tasks: one checkpoint each, by index.
SLURM_ARRAY_TASK_ID=1 b --output-dir "$t/arr" --all-checkpoints >/dev/null 2>"$t/err" || fail "array task 1 failed: $(cat "$t/err")"
[ -f "$t/arr/myrun_step_5/model.safetensors" ] && [ "$(ls "$t/arr")" = myrun_step_5 ] || fail "task 1 converted: $(ls "$t/arr")"
b --output-dir "$t/arr" --all-checkpoints --array-index 3 2>"$t/err" && fail "index 3 of 3 accepted"
grep -q "array index 3 is out of range: 3 checkpoints" "$t/err" || fail "out-of-range message: $(cat "$t/err")"

# One broken checkpoint among good ones: the others convert, the exit code says so.
cp -r "$fx/zero/s1_w2_bf16" "$run/checkpoint-7"
chmod -R u+w "$run/checkpoint-7"
truncate -s 3000 "$run/checkpoint-7/global_step1/bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"
b --output-dir "$t/br" --all-checkpoints >"$t/log" 2>"$t/err"
[ $? -eq 1 ] || fail "a broken checkpoint should exit 1"
grep -q "^checkpoint-7: error: .*bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt: not a zip archive or truncated" "$t/err" ||
	fail "broken checkpoint's error: $(cat "$t/err")"
grep -q "^ *2  checkpoint-7  *7  *-  *[^ ]*/myrun_step_7  *FAILED  " "$t/err" || fail "table lacks the failure: $(cat "$t/err")"
grep -q "^weld batch: 4 checkpoints, .* read, .* written, 1 failed$" "$t/err" || fail "summary: $(tail -1 "$t/err")"
[ -f "$t/br/myrun_step_10/model.safetensors" ] || fail "checkpoints after the broken one were not converted"
# With --json: the same run as one object; the failed checkpoint's error, the
# others' tensors, CRC-32 (zlib's, of the file written) and backend.
b --output-dir "$t/bj" --all-checkpoints --json >"$t/json" 2>"$t/err"
[ $? -eq 1 ] || fail "--json with a broken checkpoint should exit 1"
python3 - "$t/json" "$t/bj" <<'PY' || fail "results JSON: $(cat "$t/json")"
import json, os, sys, zlib
j = json.load(open(sys.argv[1]))
out = sys.argv[2]
assert j["dry_run"] is False and j["clashes"] == [], j
cs = j["checkpoints"]
assert [(c["index"], c["name"], c["step"], c["result"]) for c in cs] == [
    (0, "checkpoint-2", 2, "done"), (1, "checkpoint-5", 5, "done"), (2, "checkpoint-7", 7, "failed"),
    (3, "checkpoint-10", 10, "done")], cs
bad = cs[2]
assert "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt: not a zip archive or truncated" in bad["error"], bad
assert bad["type"] is None and bad["bytes_written"] == 0 and "tensors" not in bad, bad
for c, tensors, kind in zip([cs[0], cs[1], cs[3]], [26, 11, 12], ["safetensors-sharded", "deepspeed", "deepspeed"]):
    f = os.path.join(out, "myrun_step_%d" % c["step"], "model.safetensors")
    data = open(f, "rb").read()
    assert c["output"] == os.path.dirname(f) and c["type"] == kind and "error" not in c, c
    assert (c["tensors"], c["crc32"], c["bytes_written"], c["backend"]) == (tensors, zlib.crc32(data), len(data), "cpu"), c
    assert c["bytes_read"] > 0 and c["seconds"] > 0, c
t = j["totals"]
assert t["count"] == 4 and t["failed"] == 1 and t["bytes_written"] == sum(c["bytes_written"] for c in cs), t
assert t["bytes_read"] == sum(c["bytes_read"] for c in cs), t
PY
grep -q "^checkpoint-7: error: " "$t/err" || fail "--json: the error is not on stderr too: $(cat "$t/err")"
rm -rf "$run/checkpoint-7"

# SIGTERM in the middle: exit 143, nothing half-written; a rerun completes it,
# byte-identical to an uninterrupted conversion. The slow checkpoint is a
# 1 GiB sparse safetensors file converted in 4 KiB chunks on one thread.
big=$t/bigrun/checkpoint-1
sparse_input "$big" 1024
"$weld" batch --input-dir "$t/bigrun" --output-dir "$t/sig" --device cpu --threads 1 --chunk-bytes 4096 --quiet >"$t/log" 2>"$t/err" &
pid=$!
wait_staging "$t/sig" bigrun_step_1
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || fail "SIGTERM gave exit $rc"
[ ! -e "$t/sig/bigrun_step_1" ] || fail "interrupted run left an output folder"
[ -z "$(ls -A "$t/sig")" ] || fail "interrupted run left $(ls -A "$t/sig")"
# kill -9 leaves its staging folder and lock; the rerun clears both and completes.
"$weld" batch --input-dir "$t/bigrun" --output-dir "$t/sig" --device cpu --threads 1 --chunk-bytes 4096 --quiet >/dev/null 2>&1 &
pid=$!
wait_staging "$t/sig" bigrun_step_1
kill -KILL $pid
wait $pid 2>/dev/null
[ -n "$(ls -A "$t/sig" | grep -F .bigrun_step_1.weld-stage-)" ] && [ -e "$t/sig/.bigrun_step_1.weld-lock" ] ||
	fail "kill -9 left: $(ls -A "$t/sig")"
"$weld" batch --input-dir "$t/bigrun" --output-dir "$t/sig" --device cpu --skip-existing >/dev/null 2>"$t/err" || fail "rerun failed"
grep -q "took over the lock of a conversion that no longer runs (process $pid on host " "$t/err" || fail "no takeover notice: $(cat "$t/err")"
[ "$(ls -A "$t/sig")" = bigrun_step_1 ] || fail "the rerun left: $(ls -A "$t/sig")"
"$weld" convert --input "$big" --output "$t/ref" --device cpu --quiet || fail "reference conversion failed"
cmp -s "$t/sig/bigrun_step_1/model.safetensors" "$t/ref/model.safetensors" || fail "resumed output differs from an uninterrupted one"

# Only names that mean a step give one: "sft-v1" and "dpo-v1" are two models
# of their own, not two step 1s that would share one output.
names=$t/names
make_run "$names" qwen2_tied/st_sharded:sft-v1 zero/s2_w2_bf16:dpo-v1
"$weld" batch --input-dir "$names" --output-dir "$t/nout" --all-checkpoints --device cpu --quiet >"$t/log" 2>&1 ||
	fail "sft-v1 + dpo-v1: $(cat "$t/log")"
[ "$(ls "$t/nout")" = "$(printf 'names_dpo-v1\nnames_sft-v1')" ] || fail "sft-v1 + dpo-v1 made: $(ls "$t/nout")"
"$weld" convert --input "$fx/zero/s2_w2_bf16" --output "$t/nref" --device cpu --quiet || fail "dpo-v1 reference failed"
cmp -s "$t/nout/names_dpo-v1/model.safetensors" "$t/nref/model.safetensors" || fail "names_dpo-v1 is not dpo-v1's model"
cmp -s "$t/nout/names_sft-v1/model.safetensors" "$fx/qwen2_tied/st_single_bf16_reference/model.safetensors" ||
	fail "names_sft-v1 is not sft-v1's model"
# Two checkpoints that map to one output (checkpoint-100 and global_step100;
# step_5 and checkpoint-05) are refused with exit 2 before anything is
# written: with --force, and in every array task, even one whose own
# checkpoint (checkpoint-7) clashes with none.
clash=$t/clash
make_run "$clash" qwen2_tied/st_sharded:checkpoint-100 zero/s2_w2_bf16:global_step100 zero/s2_w2_bf16:step_5 \
	zero/s2_w2_bf16:checkpoint-05 zero/s3_w2_bf16_all:checkpoint-7
mkdir "$t/cout"
echo mine >"$t/cout/keep"
for extra in "" --force "--array-index 2" "--array-index 3 --force" "--skip-existing" SLURM; do
	for dest in "$t/cout" "$t/cnew"; do
		set -- --input-dir "$clash" --output-dir "$dest" --all-checkpoints --device cpu
		if [ "$extra" = SLURM ]; then
			SLURM_ARRAY_TASK_ID=2 "$weld" batch "$@" >"$t/log" 2>"$t/err"
		else
			"$weld" batch "$@" $extra >"$t/log" 2>"$t/err"
		fi
		rc=$?
		[ $rc -eq 2 ] || fail "clash ($extra) exited $rc"
		[ ! -s "$t/log" ] || fail "clash ($extra) printed on stdout: $(cat "$t/log")"
		[ "$(ls -A "$t/cout")" = keep ] && [ "$(cat "$t/cout/keep")" = mine ] && [ ! -e "$t/cnew" ] ||
			fail "clash ($extra) wrote: $(ls -A "$t/cout" "$t/cnew" 2>&1)"
		[ "$(sed 1d "$t/err")" = "$(printf '  %s\n  %s' "$dest/clash_step_100: checkpoint-100, global_step100" \
			"$dest/clash_step_5: checkpoint-05, step_5")" ] || fail "clash ($extra) listing: $(cat "$t/err")"
		grep -q "^weld: error: checkpoints would share an output folder, so none is converted (--force or not)" "$t/err" ||
			fail "clash ($extra) error: $(head -1 "$t/err")"
	done
done
# The dry run shows the plan with the clashing rows marked, then the same error and exit 2.
"$weld" batch --input-dir "$clash" --output-dir "$t/cout" --all-checkpoints --dry-run >"$t/plan" 2>"$t/err"
[ $? -eq 2 ] || fail "dry-run clash did not exit 2"
[ "$(awk '/^ *[0-9]/ { print $1, $2, $NF }' "$t/plan")" = "$(printf '%s\n' "0 checkpoint-05 CLASH" "1 step_5 CLASH" \
	"2 checkpoint-7 kB" "3 checkpoint-100 CLASH" "4 global_step100 CLASH")" ] || fail "dry-run clash marks: $(cat "$t/plan")"
head -1 "$t/plan" | grep -q "  WRITE  NOTE$" || fail "no NOTE column: $(head -1 "$t/plan")"
grep -q "clash_step_100: checkpoint-100, global_step100" "$t/err" || fail "dry-run clash error: $(cat "$t/err")"
"$weld" batch --input-dir "$clash" --dry-run --count --all-checkpoints >"$t/log" 2>"$t/err"
[ $? -eq 2 ] && [ ! -s "$t/log" ] && grep -q "^  clash_step_5: checkpoint-05, step_5$" "$t/err" ||
	fail "--count counted a clashing run: $(cat "$t/log" "$t/err")"
# With --json the clash is in the object too, and nothing else is on stdout.
for dry in "" --dry-run; do
	"$weld" batch --input-dir "$clash" --output-dir "$t/cout" --all-checkpoints --device cpu --force --json $dry >"$t/json" 2>"$t/err"
	[ $? -eq 2 ] || fail "--json $dry clash did not exit 2"
	[ "$(ls -A "$t/cout")" = keep ] || fail "--json $dry clash wrote: $(ls -A "$t/cout")"
	python3 - "$t/json" "$t/cout" "$dry" <<'PY' || fail "--json $dry clash: $(cat "$t/json")"
import json, sys
j = json.load(open(sys.argv[1]))
out, dry = sys.argv[2], sys.argv[3] == "--dry-run"
assert j["dry_run"] is dry, j
assert j["clashes"] == [{"output": out + "/clash_step_100", "checkpoints": ["checkpoint-100", "global_step100"]},
                        {"output": out + "/clash_step_5", "checkpoints": ["checkpoint-05", "step_5"]}], j["clashes"]
rows = [(c["index"], c["name"], c["step"], c["clash"], c["result"]) for c in j["checkpoints"]]
r = "planned" if dry else "refused"
assert rows == [(0, "checkpoint-05", 5, True, r), (1, "step_5", 5, True, r), (2, "checkpoint-7", 7, False, r),
                (3, "checkpoint-100", 100, True, r), (4, "global_step100", 100, True, r)], rows
assert j["totals"]["count"] == 5 and j["totals"]["failed"] == 0, j["totals"]
assert (j["totals"]["bytes_read"] > 0) is dry and j["totals"]["bytes_written"] >= 0, j["totals"]
PY
	grep -q "^  $t/cout/clash_step_5: checkpoint-05, step_5$" "$t/err" || fail "--json $dry clash error: $(cat "$t/err")"
done
# --latest takes every checkpoint of the highest step: two are a clash, not one picked by name.
"$weld" batch --input-dir "$clash" --output-dir "$t/cout" --device cpu >"$t/log" 2>"$t/err"
[ $? -eq 2 ] && [ "$(sed 1d "$t/err")" = "  $t/cout/clash_step_100: checkpoint-100, global_step100" ] ||
	fail "--latest over a clash: $(cat "$t/err")"
[ "$(ls -A "$t/cout")" = keep ] || fail "--latest over a clash wrote: $(ls -A "$t/cout")"

# The step names: all digits after checkpoint-, global_step, step_, step- or
# iter_ (leading zeros too); others (checkpoint-9x) have no step and sort
# last by name; --latest takes the highest step over them.
for d in iter_0000100 step-7 step_30 global_step12 checkpoint-9x; do
	make_run "$names" "qwen2_tied/st_sharded:$d"
done
"$weld" batch --input-dir "$names" --output-dir "$t/nout" --all-checkpoints --json --dry-run 2>"$t/err" |
	python3 -c 'import json,sys; print(" ".join("%s=%s" % (c["name"], c["step"]) for c in json.load(sys.stdin)["checkpoints"]))' >"$t/steps"
[ "$(cat "$t/steps")" = "step-7=7 global_step12=12 step_30=30 iter_0000100=100 checkpoint-9x=None dpo-v1=None sft-v1=None" ] ||
	fail "steps and order: $(cat "$t/steps" "$t/err")"
"$weld" batch --input-dir "$names" --output-dir "$t/nout" --dry-run --json 2>"$t/err" |
	python3 -c 'import json,sys; c = json.load(sys.stdin)["checkpoints"]; print(len(c), c[0]["name"], c[0]["output"])' >"$t/steps"
[ "$(cat "$t/steps")" = "1 iter_0000100 $t/nout/names_step_100" ] || fail "--latest: $(cat "$t/steps" "$t/err")"

# A real HF Trainer + DeepSpeed run (tests/fixtures/trainer): checkpoint-1's
# 16-bit copy agrees with its masters, checkpoint-2's differs in one tensor.
trun=$t/trun
make_run "$trun" trainer/z2_untied/checkpoint-1:checkpoint-1 trainer/z2_altered/checkpoint-2:checkpoint-2
# --quiet: the results table and nothing else on stderr (no start line,
# summary, note or cross-check line), nothing on stdout; a rerun's skips too.
for extra in "" --skip-existing; do
	"$weld" batch --input-dir "$trun" --output-dir "$t/tq" --all-checkpoints --device cpu --quiet $extra >"$t/log" 2>"$t/err" ||
		fail "--quiet $extra: $(cat "$t/err")"
	[ ! -s "$t/log" ] && [ "$(wc -l <"$t/err")" -eq 4 ] && head -1 "$t/err" | grep -q "^INDEX  NAME " &&
		tail -1 "$t/err" | grep -q "^weld batch: 2 checkpoints, " || fail "--quiet $extra printed: $(cat "$t/log" "$t/err")"
done
grep -q "^ *1  checkpoint-2  *2  *-  *$t/tq/trun_step_2  *skipped  " "$t/err" || fail "--quiet rerun's table: $(cat "$t/err")"

# The results table notes the copy that differs; --quiet keeps the note.
note="cross-check: differs (first: model.layers.1.mlp.down_proj.weight)"
rm -rf "$t/tq"
"$weld" batch --input-dir "$trun" --output-dir "$t/tq" --all-checkpoints --device cpu --quiet 2>"$t/err"
head -1 "$t/err" | grep -q "  SECONDS  NOTE$" && grep -q "^ *0  checkpoint-1  .*  done  *[0-9.]*$" "$t/err" &&
	grep -q "^ *1  checkpoint-2  .*  done  *[0-9.]*  $note$" "$t/err" || fail "no cross-check note: $(cat "$t/err")"
# --json: each converted row also says what convert --json says: the cross-check, notice, tied aliases,
# float16 overflows, bytes planned, the format's detail and the weights file.
"$weld" batch --input-dir "$trun" --output-dir "$t/tj" --all-checkpoints --device cpu --json >"$t/json" 2>"$t/err" ||
	fail "trainer run --json: $(cat "$t/err")"
python3 - "$t/json" "$t/tj" "$trun" <<'PY' || fail "trainer run JSON: $(cat "$t/json")"
import json, sys
j = json.load(open(sys.argv[1]))
out, run = sys.argv[2], sys.argv[3]
one, two = j["checkpoints"]
for c, step in ((one, 1), (two, 2)):
    assert set(c) == {"index", "name", "step", "type", "output", "bytes_read", "bytes_written", "result", "seconds", "clash",
                      "tensors", "crc32", "backend", "cross_check", "notice", "tied", "fp16_overflows", "bytes_to_read",
                      "format_detail", "weights", "source_choice"}, sorted(c)
    assert c["weights"] == "%s/trun_step_%d/model.safetensors" % (out, step), c
    assert c["format_detail"] == "ZeRO-2, 2 ranks, tag global_step%d" % step, c
    assert (c["tied"], c["fp16_overflows"], c["tensors"]) == (0, 0, 21), c
    assert 0 < c["bytes_to_read"] <= c["bytes_read"], c
    assert c["notice"] == "", c["notice"]
    assert c["source_choice"] == ("%s/checkpoint-%d: read the DeepSpeed fp32 master weights (tag global_step%d), not the HF "
                           "safetensors weights beside them (--type hf reads those)" % (run, step, step)), c["source_choice"]
x1, x2 = one["cross_check"], two["cross_check"]
assert (x1["result"], x1["against"], x1["compared"], x1["differing"], x1["first_difference"]) == (
    "agree", "safetensors", 21, 0, None), x1
assert (x2["result"], x2["compared"], x2["differing"], x2["first_difference"]) == (
    "differ", 21, 1, "model.layers.1.mlp.down_proj.weight"), x2
assert x2["summary"] == ("the HF safetensors weights beside the masters DIFFER from the masters cast to bfloat16 in 1 of "
                         "21 tensors (first: model.layers.1.mlp.down_proj.weight)"), x2
PY

# A run of a format weld recognises but does not read (Megatron-LM) holds no
# folder batch takes for a checkpoint: it is refused naming the format, not
# with "no checkpoints found". --count too: 0 would size an empty array.
mkdir -p "$t/mega/iter_0000100/mp_rank_00"
echo 100 >"$t/mega/latest_checkpointed_iteration.txt"
: >"$t/mega/iter_0000100/mp_rank_00/model_optim_rng.pt"
for r in "mega:a Megatron-LM checkpoint (latest_checkpointed_iteration.txt)"; do
	for extra in "" "--dry-run --count" "--checkpoint-filter iter_*"; do
		"$weld" batch --input-dir "$t/${r%%:*}" --output-dir "$t/uout" $extra >"$t/log" 2>"$t/err"
		rc=$?
		[ $rc -eq 1 ] && [ ! -s "$t/log" ] && [ ! -e "$t/uout" ] &&
			[ "$(cat "$t/err")" = "weld: error: $t/${r%%:*}: ${r#*:}; weld does not read this format yet" ] ||
			fail "unsupported run ${r%%:*} ($extra): exit $rc: $(cat "$t/log" "$t/err")"
	done
done
# A folder of nothing weld knows is still "no checkpoints found".
mkdir "$t/empty"
"$weld" batch --input-dir "$t/empty" --output-dir "$t/uout" >/dev/null 2>"$t/err"
[ $? -eq 1 ] && [ "$(cat "$t/err")" = "weld: error: $t/empty: no checkpoints found" ] || fail "empty run: $(cat "$t/err")"

if [ "$fails" -ne 0 ]; then
	echo "$fails batch check(s) failed"
	exit 1
fi
echo "all batch checks passed"
