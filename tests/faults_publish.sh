#!/usr/bin/env bash
# A fault at every file-system call of a conversion (tests/fault/fault_io.c):
# each open, write, truncate, fsync, mkdir, rename and unlink in the output's
# folder fails in turn, and separately the process is killed just before it.
# Three cases: into a fresh target; with --force over another model's good
# output (RENAME_EXCHANGE); and the same where renameat2 refuses
# RENAME_EXCHANGE with EINVAL, as filesystems without it do, so that the
# two-step publish is taken.
# After every fault the target must be exactly the old output or exactly the
# new one (every file compared), never a mix; exit 0 only with the new one,
# and never after a failed call other than a removal;
# and a plain rerun must give the new output byte for byte with nothing left
# beside it. One table line per fault point: what the target was afterwards.
# Usage: faults_publish.sh WELD SOURCE_DIR SHIM [--table]
set -u
weld=$1
fx=$2/tests/fixtures
shim=$3
show=${4:-}
fails=0
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
. "$(dirname "$0")/lib.sh"
new_in=$fx/qwen2_tied/st_sharded
old_in=$fx/hf_edge/wrapped
area=$t/area
target=$area/out
conv() { "$weld" convert --input "$1" --output "$2" --device cpu --threads 1 --quiet "${@:3}"; }

conv "$new_in" "$t/new" || fail "reference conversion failed"
conv "$old_in" "$t/old" || fail "old output conversion failed"

same() { diff -r --no-dereference "$1" "$2" >/dev/null 2>&1; }

# What the target is now: absent, old, new, aside (the old output moved aside
# by a two-step publish, to be put back by the next run) or MIX.
state() {
	if [ -e "$target" ]; then
		if same "$target" "$t/new"; then echo new; elif same "$target" "$t/old"; then echo old; else echo MIX; fi
	elif ls -d "$area"/.out.weld-old-* >/dev/null 2>&1; then
		same "$area"/.out.weld-old-* "$t/old" && echo aside || echo MIX
	else
		echo absent
	fi
}

# setup CASE: the area as the case starts.
setup() {
	rm -rf "$area"
	mkdir -p "$area"
	[ "$1" = fresh ] || cp -a "$t/old" "$target"
}

# run CASE [SHIM ENV...]: one conversion of the case into the target.
run() {
	local case=$1
	shift
	local force=()
	[ "$case" = fresh ] || force=(--force)
	local exch=()
	[ "$case" = two-step ] && exch=(WELD_FAULT_NO_EXCHANGE=1 LD_PRELOAD="$shim")
	env "${exch[@]}" "$@" "$weld" convert --input "$new_in" --output "$target" --device cpu --threads 1 --quiet \
		"${force[@]}" 2>"$t/err"
}

# pfail TEXT: a failure seen inside point, which runs in a subshell.
pfail() {
	echo "FAIL: $*" >&2
	echo x >>"$t/failed"
}

# point CASE KIND N HOW PATH: inject, judge what is left, rerun. Prints the outcome.
point() {
	local case=$1 kind=$2 n=$3 how=$4 path=$5 rc st
	setup "$case"
	run "$case" WELD_FAULT_DIR="$area" WELD_FAULT="$kind:$n:$how" LD_PRELOAD="$shim"
	rc=$?
	st=$(state)
	local allowed="new absent"
	[ "$case" = fresh ] || allowed="new old"
	[ "$case" = two-step ] && [ "$how" = kill ] && allowed="$allowed aside"
	case " $allowed " in *" $st "*) ;; *) pfail "$case $kind:$n:$how left the target $st (exit $rc): $(cat "$t/err")" ;; esac
	[ $rc -ne 0 ] || [ "$st" = new ] || pfail "$case $kind:$n:$how exited 0 with the target $st"
	# Only removals (a draft, the old contents, the released lock) are best effort, with the
	# rename that puts a two-step publish's old contents under the staging name to be removed.
	local best_effort=0
	[ "$kind" = unlink ] && best_effort=1
	[ "$kind" = rename ] && [ "$case" = two-step ] && [ "${path#*.out.weld-stage-}" != "$path" ] && best_effort=1
	[ "$how" = kill ] || [ $best_effort = 1 ] || [ $rc -ne 0 ] || pfail "$case $kind:$n:fail went unreported (exit 0)"
	if [ "$st" = aside ]; then
		# Any next run puts the old output back first, even one that then fails.
		"$weld" convert --input "$t/no-such-input" --output "$target" --quiet 2>/dev/null
		[ "$(state)" = old ] || pfail "$case $kind:$n:$how: the next run did not put the old output back ($(state))"
	fi
	# Nothing left by the fault stands in the way: a fresh case reruns without --force while there is no target.
	local rerun=$case
	[ "$st" = absent ] || [ "$case" != fresh ] || rerun=force
	run "$rerun" || pfail "$case $kind:$n:$how: the rerun failed: $(cat "$t/err")"
	[ "$(state)" = new ] || pfail "$case $kind:$n:$how: the rerun left the target $(state)"
	[ "$(ls -A "$area")" = out ] || pfail "$case $kind:$n:$how: the rerun left $(ls -A "$area" | tr '\n' ' ')"
	local word=$st
	[ $rc -eq 137 ] && word="$st, killed" || word="$st, exit $rc"
	printf '%s' "$word"
}

total=0
for case in fresh force two-step; do
	setup "$case"
	run "$case" WELD_FAULT_DIR="$area" WELD_FAULT_LOG="$t/calls" LD_PRELOAD="$shim" || fail "$case: the counting run failed"
	[ "$(state)" = new ] || fail "$case: the counting run left the target $(state)"
	mv "$t/calls" "$t/calls.$case"
	[ -n "$show" ] && printf '\n%s\n%-8s %-3s %-58s %-18s %s\n' "$case" KIND N PATH FAIL KILL
	while read -r kind n path; do
		f=$(point "$case" "$kind" "$n" fail "$path")
		k=$(point "$case" "$kind" "$n" kill "$path")
		total=$((total + 2))
		[ -n "$show" ] && printf '%-8s %-3s %-58s %-18s %s\n' "$kind" "$n" \
			"$(echo "$path" | sed "s|^$area|.|; s|[0-9][0-9][0-9]*|PID|g")" "$f" "$k"
	done <"$t/calls.$case"
done

[ -f "$t/failed" ] && fails=$((fails + $(wc -l <"$t/failed")))
if [ "$fails" -ne 0 ]; then
	echo "$fails of $total fault-injection check(s) failed"
	exit 1
fi
echo "all $total injected faults left the old or the new output, and every rerun gave the new one"
