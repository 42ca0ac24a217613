#!/usr/bin/env bash
# Builds the wolfSSL of Hypha's performance build: the same release and the
# same configure options as Debian's libwolfssl (--enable-distro
# --enable-pkcs11), plus the assembly options Debian's generic build
# leaves out (AES-NI, Intel assembly, single-precision ECC math with its
# x86_64 assembly). Installs it under a prefix for -DHYPHA_WOLFSSL_ROOT.
#
# usage: bench/wolfssl_perf.sh [PREFIX]
#   PREFIX             where it is installed (HYPHA_WOLFSSL_ROOT, default
#                      build-wolfssl-perf/root in the repository)
#   HYPHA_WOLFSSL_SRC  a wolfSSL source tree or release tarball to build;
#                      without it, Debian's source of the packaged release
#                      (wolfssl_5.5.4.orig.tar.gz) is downloaded from
#                      deb.debian.org and its MD5 checked against Debian's
#                      Sources index.
# Prints the prefix on its last line. Nothing of it goes into the repository.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-${HYPHA_WOLFSSL_ROOT:-$root/build-wolfssl-perf/root}}
work=$root/build-wolfssl-perf
mkdir -p "$work" "$prefix"
prefix=$(cd "$prefix" && pwd)

# shellcheck source=deploy/local/deps.sh
. "$root/deploy/local/deps.sh"
hy_install_packages build-essential autoconf automake libtool curl xz-utils

src=${HYPHA_WOLFSSL_SRC:-}
if [ -z "$src" ]; then
    tarball=wolfssl_5.5.4.orig.tar.gz
    curl -sf -o "$work/Sources.xz" http://deb.debian.org/debian/dists/bookworm/main/source/Sources.xz ||
        { echo "wolfssl_perf.sh: cannot download Debian's Sources index" >&2; exit 1; }
    want=$(xz -dc "$work/Sources.xz" | awk -v f="$tarball" '/^Package: wolfssl$/ {p = 1}
        p && /^Files:/ {q = 1; next} q && $3 == f && !w {w = $1} p && /^$/ {p = 0; q = 0}
        END {print w}')
    [ -n "$want" ] || { echo "wolfssl_perf.sh: $tarball is not in Debian's Sources index" >&2; exit 1; }
    if [ ! -f "$work/$tarball" ] || [ "$(md5sum <"$work/$tarball" | cut -d' ' -f1)" != "$want" ]; then
        curl -sf -o "$work/$tarball" "http://deb.debian.org/debian/pool/main/w/wolfssl/$tarball"
    fi
    got=$(md5sum <"$work/$tarball" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "wolfssl_perf.sh: $tarball has MD5 $got, Debian says $want" >&2; exit 1; }
    src=$work/$tarball
fi
if [ -f "$src" ]; then
    rm -rf "$work/src" && mkdir -p "$work/src"
    tar xzf "$src" -C "$work/src" --strip-components=1
    src=$work/src
fi
[ -x "$src/configure" ] || (cd "$src" && ./autogen.sh)

jobs=$(nproc)
cd "$src"
./configure --prefix="$prefix" --enable-distro --enable-pkcs11 --disable-examples \
    --enable-aesni --enable-intelasm --enable-sp --enable-sp-asm --disable-silent-rules \
    >"$work/configure.log" 2>&1 || { tail -20 "$work/configure.log" >&2; exit 1; }
make -j "$jobs" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
make install >"$work/install.log" 2>&1 || { tail -20 "$work/install.log" >&2; exit 1; }
# --enable-distro leaves the options header out of the install; Debian's
# package ships it, and Hypha includes it first, as wolfSSL asks
install -m 0644 wolfssl/options.h "$prefix/include/wolfssl/options.h"
grep -q 'WOLFSSL_AESNI' "$prefix/include/wolfssl/options.h" ||
    { echo "wolfssl_perf.sh: the build has no AES-NI (see $work/configure.log)" >&2; exit 1; }
echo "$prefix"
