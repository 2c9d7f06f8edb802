#!/usr/bin/env bash
# Integration test under a real single-node Slurm: installs Debian's
# slurm-wlm and munge (as root), starts munged, slurmctld and slurmd on this
# machine, submits scripts/slurm/convert-array.sbatch as an array job over a
# run folder of fixture checkpoints, and checks every output; then runs one
# conversion as `srun -n 3` (three parts) against one process's bytes.
# Opt-in: runs only with WELD_SLURM_TEST=1; otherwise it exits 77 (ctest: Not Run).
# Usage: run.sh WELD SOURCE_DIR
set -euo pipefail
if [ "${WELD_SLURM_TEST:-0}" != 1 ]; then
	echo "slurm: skipped (set WELD_SLURM_TEST=1 to install and start Slurm on this machine, as root)"
	exit 77
fi
weld=$(readlink -f "$1")
src=$(readlink -f "$2")
[ "$(id -u)" -eq 0 ] || { echo "slurm: needs root"; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
host=$(hostname -s)
cpus=$(nproc)
mkdir -p /etc/munge /var/log/munge /run/munge /var/spool/slurmctld /var/spool/slurmd /etc/slurm
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c "munged" || munged --force
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=weldtest
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ReturnToService=2
SlurmctldLogFile=/var/log/slurmctld.log
SlurmdLogFile=/var/log/slurmd.log
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pkill -x slurmctld || true
pkill -x slurmd || true
sleep 1
# The daemons this test starts stop with it.
trap 'pkill -x slurmd || true; pkill -x slurmctld || true' EXIT
slurmctld -c
slurmd
for i in $(seq 1 30); do
	sinfo -h -o %t 2>/dev/null | grep -qE "idle|mix" && break
	sleep 1
done
sinfo -h -o "%n %t" || { echo "slurm: the node never came up"; tail -20 /var/log/slurmctld.log /var/log/slurmd.log; exit 1; }

t=$(mktemp -d /tmp/weld-slurm-XXXXXX)
run=$t/run
mkdir -p "$run"
cp -r "$src/tests/fixtures/qwen2_tied/st_sharded" "$run/checkpoint-2"
cp -r "$src/tests/fixtures/zero/s2_w2_bf16" "$run/checkpoint-5"
cp -r "$src/tests/fixtures/zero/s3_w2_bf16_all" "$run/checkpoint-10"
n=$("$weld" batch --input-dir "$run" --dry-run --count --all-checkpoints)
cd "$t"
sbatch --wait --array=0-$((n - 1)) --cpus-per-task=1 --mem=0 \
	--export=ALL,RUN="$run",OUT="$t/out",WELD="$weld",WELD_ARGS="--device cpu" \
	"$src/scripts/slurm/convert-array.sbatch"
fails=0
for s in 2 5 10; do
	if ! "$weld" batch --input-dir "$run" --output-dir "$t/out" --all-checkpoints --skip-existing --dry-run >/dev/null ||
		[ ! -f "$t/out/run_step_$s/model.safetensors" ]; then
		echo "slurm: run_step_$s missing"
		fails=$((fails + 1))
	fi
done
# Every output must verify, and each array task's log starts its lines with its checkpoint.
# (The per-checkpoint lines are a log: on stderr.)
out=$("$weld" batch --input-dir "$run" --output-dir "$t/out" --all-checkpoints --skip-existing 2>&1)
[ "$(echo "$out" | grep -c ": skipped: .* verifies")" = 3 ] || { echo "slurm: outputs do not verify: $out"; fails=$((fails + 1)); }
grep -h "^checkpoint-" "$t"/weld-*.log | head -3
# One conversion as the 3 tasks of one job step (weld takes its parts from SLURM_NTASKS and
# SLURM_PROCID): byte for byte the single-process output. --overcommit: the node may have fewer CPUs.
"$weld" convert --input "$src/tests/fixtures/zero/s3_w2_bf16" --output "$t/ref-parts" --device cpu --quiet
srun -n 3 --overcommit "$weld" convert --input "$src/tests/fixtures/zero/s3_w2_bf16" --output "$t/parts" \
	--device cpu --quiet || { echo "slurm: srun -n 3 convert failed"; fails=$((fails + 1)); }
diff -r "$t/ref-parts" "$t/parts" >/dev/null || { echo "slurm: srun -n 3 output differs from one process"; fails=$((fails + 1)); }
[ ! -e "$t/.parts.weld-parts" ] || { echo "slurm: srun -n 3 left its parts folder"; fails=$((fails + 1)); }
# weld watch --until-step: a job whose step 0 "trains" (sleeps 4 s) while step 1 watches; the
# watcher must outlive the training step, then convert what is left and exit 0.
mkdir -p "$t/wrun"
cp -r "$src/tests/fixtures/trainer/z2_untied/checkpoint-1" "$src/tests/fixtures/trainer/z2_untied/checkpoint-2" "$t/wrun/"
cat >"$t/watch.sbatch" <<SB
#!/bin/bash
srun --overlap -n 1 sleep 4 &
sleep 1
start=\$(date +%s)
srun --overlap -n 1 "$weld" watch --input-dir "$t/wrun" --output-dir "$t/wout" --poll 1 --no-inotify --device cpu \
	--until-step \$SLURM_JOB_ID.0
echo "watch exit \$? after \$((\$(date +%s) - start)) s"
SB
(cd "$t" && sbatch --wait -n 1 --overcommit --output="$t/watch.log" "$t/watch.sbatch" >/dev/null) || true
if ! grep -qE "^watch exit 0 after [2-9] s" "$t/watch.log" || [ "$(ls "$t/wout" | wc -l)" != 2 ]; then
	echo "slurm: weld watch --until-step did not follow the training step: $(tail -3 "$t/watch.log")"
	fails=$((fails + 1))
fi
[ $fails -eq 0 ] && echo "slurm: array job of $n tasks converted every checkpoint; srun -n 3 gave one process's bytes;" \
	"weld watch ended with the training step" && rm -rf "$t"
exit $fails
