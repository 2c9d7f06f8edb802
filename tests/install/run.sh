#!/usr/bin/env bash
# `cmake --install` into a temporary prefix, then what a user of it does:
# runs bin/weld, reads the man pages, completes with the bash completion,
# and builds a small C program against the library with pkg-config and with
# find_package(weld), shared and static, and runs them.
#   tests/install/run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
for t in pkg-config cc cmake; do
	command -v $t >/dev/null || { echo "SKIP: $t not found"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
P=$tmp/prefix
cmake --install "$build" --prefix "$P" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
(cd "$P" && find . | sort) >"$tmp/tree"
pc=$(find "$P" -name weld.pc)
[ -n "$pc" ] || fail "no weld.pc installed"
libdir=$(cd "$(dirname "$pc")/.." && pwd)
bundled=$(grep -c '^WELD_BUNDLED_DEPS:BOOL=ON' "$build/CMakeCache.txt" || true)

expect=(bin/weld include/weld.h "${libdir#$P/}/libweld.so" "${libdir#$P/}/cmake/weld/weldConfig.cmake"
	"${libdir#$P/}/cmake/weld/weldConfigVersion.cmake" share/man/man1/weld.1
	share/bash-completion/completions/weld share/zsh/site-functions/_weld)
[ "$bundled" = 1 ] || expect+=("${libdir#$P/}/libweld.a")
cmds=$("$P/bin/weld" --help | sed -n '/^commands:/,/^$/s/^  \([a-z]\+\) .*/\1/p')
[ -n "$cmds" ] || fail "no commands in weld --help"
for c in $cmds; do expect+=("share/man/man1/weld-$c.1"); done
for f in "${expect[@]}"; do [ -e "$P/$f" ] || fail "not installed: $f"; done

# The library: a versioned SONAME, and only the public API of weld.h exported.
soname=$(readelf -d "$libdir/libweld.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ $soname =~ ^libweld\.so\.[0-9]+\.[0-9]+$ ]] || fail "SONAME '$soname'"
[ -e "$libdir/$soname" ] || fail "$soname not installed"
api=$(grep -o 'weld_[a-z0-9_]*(' "$P/include/weld.h" | tr -d '(' | sort -u)
exported=$(nm -D --defined-only "$libdir/libweld.so" | awk '$2 == "T" {sub(/@.*/, "", $3); print $3}' | sort -u)
[ "$api" = "$exported" ] || fail "libweld.so exports differ from weld.h: $(diff <(echo "$api") <(echo "$exported") | head)"
"$P/bin/weld" --version | grep -q "^weld " || fail "bin/weld --version"

# Man pages: every option of every command's --help is in its page, and groff reads them cleanly.
for c in $cmds; do
	for o in $("$P/bin/weld" help "$c" | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
		grep -q -- "${o//-/\\\\-}" "$P/share/man/man1/weld-$c.1" || fail "weld-$c.1 lacks $o"
	done
done
if command -v groff >/dev/null; then
	for m in "$P"/share/man/man1/*.1; do
		w=$(groff -man -Tutf8 -ww -z "$m" 2>&1) && [ -z "$w" ] || fail "groff on $m: $w"
	done
fi

# The bash completion, as bash calls it.
complete_words() { # WORD... : what completing the last word offers
	bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _weld; echo "${COMPREPLY[*]}"' \
		_ "$P/share/bash-completion/completions/weld" "$@"
}
[[ " $(complete_words weld co) " == *" convert "* ]] || fail "completion of a command"
[[ " $(complete_words weld convert --dt) " == *" --dtype "* ]] || fail "completion of an option"
[[ " $(complete_words weld convert --dtype bf) " == *" bfloat16 "* ]] || fail "completion of a value"
[[ " $(complete_words weld batch --all) " == *" --all-checkpoints "* ]] || fail "completion of batch's option"
if command -v zsh >/dev/null; then zsh -n "$P/share/zsh/site-functions/_weld" || fail "zsh completion syntax"; fi

# pkg-config, shared and static.
export PKG_CONFIG_PATH=$libdir/pkgconfig
cc $(pkg-config --cflags weld) "$src/tests/install/consumer/main.c" $(pkg-config --libs weld) -o "$tmp/pc_shared"
LD_LIBRARY_PATH=$libdir "$tmp/pc_shared" | grep -q "^weld " || fail "pkg-config shared program"
readelf -d "$tmp/pc_shared" | grep -q "NEEDED.*\[$soname\]" || fail "pkg-config shared program does not need $soname"
if [ "$bundled" != 1 ]; then
	static_libs=$(pkg-config --static --libs weld | sed 's/ -lweld / /; s/^-lweld //')
	cc $(pkg-config --cflags weld) "$src/tests/install/consumer/main.c" "$libdir/libweld.a" $static_libs -o "$tmp/pc_static"
	"$tmp/pc_static" | grep -q "^weld " || fail "pkg-config static program"
fi

# find_package(weld) from another CMake project.
cmake -S "$src/tests/install/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$P" >"$tmp/consumer.log" 2>&1 &&
	cmake --build "$tmp/consumer" >>"$tmp/consumer.log" 2>&1 || { cat "$tmp/consumer.log"; fail "find_package(weld) project"; }
"$tmp/consumer/consumer_shared" | grep -q "^weld " || fail "find_package shared program"
if [ "$bundled" != 1 ]; then
	"$tmp/consumer/consumer_static" | grep -q "^weld " || fail "find_package static program"
fi
echo "install: $(wc -l <"$tmp/tree") paths under the prefix; pkg-config and find_package programs ran"
