#!/usr/bin/env bash
# What makes a weld binary portable, measured on the file: no glibc symbol
# newer than GLIBC (objdump -T), and no shared library but the C runtime
# (readelf -d NEEDED), so that it runs on any cluster node with that glibc.
#   tests/release/check-portable.sh GLIBC FILE...
set -euo pipefail
floor=$1
shift
for t in objdump readelf; do command -v $t >/dev/null || { echo "SKIP: $t not found (binutils)"; exit 77; }; done
allowed=" libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 ld-linux-x86-64.so.2 "
status=0
for f in "$@"; do
	newest=$(objdump -T "$f" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
	if [ "$(printf '%s\n%s\n' "$newest" "$floor" | sort -V | tail -1)" != "$floor" ]; then
		echo "FAIL: $f needs GLIBC_$newest, newer than $floor:"
		objdump -T "$f" | grep -E "GLIBC_$newest\b" | head -5
		status=1
	fi
	needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
	for lib in $needed; do
		[[ $allowed == *" $lib "* ]] || { echo "FAIL: $f needs $lib (allowed: $allowed)"; status=1; }
	done
	echo "$(basename "$f"): glibc floor GLIBC_$newest (<= $floor), NEEDED: $needed"
done
exit $status
