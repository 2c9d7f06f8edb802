#!/usr/bin/env bash
# The structure checker on synthetic trees: clean/ passes, and clean/ with
# violations/ laid over it reports exactly the problems it holds: one of each
# kind, every layer rule broken at least once. The long files and a fake build
# folder of object files (for the call-cycle rule) are made here.
# Usage: run.sh SCRIPT [PYTHON]
set -u
script=$1
python=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
fails=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
. "$here/../lib.sh"

tree=$out/tree
build=$out/build
check() { "$python" "$script" "$@"; }
# comments N: N lines of comments.
comments() { for ((i = 1; i <= $1; i++)); do echo "/* line $i */"; done; }
# compile OBJECT [SOURCE]: compile SOURCE (or C from stdin) into $build/OBJECT,
# named as CMake names it (src/formats/user.c.o).
compile() {
	local src=${2:-$out/unit.c}
	[ $# -ge 2 ] || cat >"$src"
	mkdir -p "$(dirname "$build/$1")"
	if ! "$cc" -c -o "$build/$1" "$src"; then
		echo "FAIL: cannot compile $src"
		fails=$((fails + 1))
	fi
}

expect 2 check
has stderr "usage: check-structure SOURCE_DIR [BUILD_DIR]"
expect 0 check --help
has stdout "No include cycles between modules"

# The clean tree, with a file of exactly 800 lines and a function of exactly
# 120 (src/pipeline/plan.c): at the limits, not over them.
cp -R "$here/clean" "$tree"
comments 800 >"$tree/src/util/table.c"
summary="structure: 24 files, longest function src/pipeline/plan.c:8 weld__plan_build (120 lines), largest file src/util/table.c (800 lines); no layer violations"
expect 0 check "$tree"
last stdout "$summary, no include cycles; call cycles not checked (no BUILD_DIR)"
lines stdout 1
mkdir -p "$build"
expect 0 check "$tree" "$build"
last stdout "$summary, no include cycles; call cycles not checked (no library objects under $build)"

# The library's objects: src/formats/user.c uses src/util/leaf.c, and the
# CUDA backend (a C stand-in for cuda/backend.cu) uses leaf too. Objects
# outside the library (the tool's) and objects whose source is gone (left by
# a move) would close cycles through weld__hook and weld__gone: both ignored.
lib=CMakeFiles/weld_lib.dir
compile $lib/src/util/leaf.c.o "$tree/src/util/leaf.c"
compile $lib/src/formats/user.c.o "$tree/src/formats/user.c"
compile CMakeFiles/weld_cuda.dir/cuda/backend.cu.o <<'EOF'
void weld__leaf(void);
void weld__ring(void);
int weld__cuda_open(int device) { weld__leaf(); if (device < 0) weld__ring(); return 0; }
EOF
compile CMakeFiles/weld.dir/src/cli/main.c.o <<'EOF'
void weld__user(void);
void weld__hook(void) { weld__user(); }
EOF
compile $lib/src/formats/gone.c.o <<'EOF'
void weld__user(void);
void weld__gone(void) { weld__user(); }
EOF
expect 0 check "$tree" "$build"
last stdout "$summary, no include or call cycles"
lines stdout 1

# Every kind of problem: violations/ over the clean tree, an 801-line file,
# and src/formats/ring.c built, which the CUDA backend's object calls back.
cp -R "$here/violations/." "$tree"
comments 801 >"$tree/src/output/big.c"
compile $lib/src/formats/ring.c.o "$tree/src/formats/ring.c"
expect 1 check "$tree" "$build"
cat >"$out/want" <<'EOF'
files over 800 lines: 1
src/output/big.c: 801 lines
functions over 120 lines: 1
cuda/long.cu:32 weld__cuda_long (121 lines)
layer violations: 8
src/backend/cpu.c:3 includes src/formats/ckpt.h: backends know nothing of formats
src/cli/inspect.c:4 includes src/formats/ckpt.h: src/cli/ sees only weld.h and its own headers
src/formats/zero.c:3 includes src/backend/backend.h: formats know nothing of backends
src/formats/zero.c:4 includes src/backend/gpu.h: formats know nothing of backends
src/output/manifest.c:3 includes src/cli/cli.h: only src/cli/ includes src/cli/
src/pipeline/execute.c:3 includes cuda/cuda_backend.h: only src/backend/ includes cuda/
src/util/strings.c:3 includes src/io/zip.h: src/util/ includes only src/util/ and weld.h
src/util/strings.c:4 includes src/backend/backend.h: formats know nothing of backends; src/util/ includes only src/util/ and weld.h
include cycles: 1
include cycle between modules src/io/pickle, src/io/torch:
  src/io/pickle.c:3 includes src/io/torch.h
  src/io/torch.h:4 includes src/io/pickle.h
call cycles: 1
call cycle between source files cuda/backend.cu, src/formats/ring.c:
  cuda/backend.cu uses src/formats/ring.c: weld__ring
  src/formats/ring.c uses cuda/backend.cu: weld__cuda_open
structure: 12 problems (files over 800 lines: 1, functions over 120 lines: 1, layer violations: 8, include cycles: 1, call cycles: 1)
EOF
if ! diff -u "$out/want" "$out/stdout" >"$out/diff"; then
	echo "FAIL: the violations' report differs from the expected one:"
	cat "$out/diff"
	fails=$((fails + 1))
fi

[ "$fails" = 0 ] && echo "structure self-test: all passed"
exit $((fails > 0))
