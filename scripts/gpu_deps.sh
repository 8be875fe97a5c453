#!/usr/bin/env bash
# gpu_deps.sh: the build's libraries for a machine that cannot install any
# (the lent GPU machine: no apt, no network; docs/results/gpu/README.md).
#
#   bash scripts/gpu_deps.sh pack [TARBALL]     here, where apt works: downloads the
#       .debs of OpenBLAS, cJSON, libyaml, protobuf-c (+ protoc-c), ZeroMQ,
#       libmicrohttpd, pkgconf and the runtime libraries they load, unpacks them,
#       keeps headers, shared libraries and the two programs, writes pkg-config
#       files of its own (no Requires.private chains) and packs it all into
#       TARBALL (default .gpu/deps.tar.xz; .gpu/ is git-ignored: name it in the
#       device call's carry). About 11 MB (xz).
#   bash scripts/gpu_deps.sh unpack TARBALL DIR  there: unpacks into DIR, fixes the
#       paths, and writes DIR/env.sh (source it) and DIR/cmake.args (options for
#       cmake: PKG_CONFIG_EXECUTABLE, PROTOC_C, rpath flags).
#
# The packages are Debian 12's (this host's apt); they need glibc >= 2.36 and a
# libstdc++ from GCC >= 12 there (Ubuntu 24.04, the device image, has both).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ARCH_LIB=usr/lib/x86_64-linux-gnu
PKGS="libopenblas-pthread-dev libopenblas0-pthread libgfortran5 libquadmath0 libcjson-dev libcjson1
 libyaml-dev libyaml-0-2 libprotobuf-c-dev libprotobuf-c1 protobuf-c-compiler libprotoc32 libprotobuf32
 libzmq3-dev libzmq5 libsodium23 libpgm-5.3-0 libnorm1 libbsd0 libmd0 libgssapi-krb5-2 libkrb5-3
 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libmicrohttpd-dev libmicrohttpd12 libgnutls30
 libp11-kit0 libidn2-0 libunistring2 libtasn1-6 libnettle8 libhogweed6 libgmp10 libffi8 pkgconf-bin libpkgconf3"

# name libs cflags-extra: a .pc file with @PREFIX@ for the unpacked root
s_pc() {
  local name=$1 libs=$2 inc=${3:-}
  cat <<EOF
prefix=@PREFIX@/usr
libdir=@PREFIX@/$ARCH_LIB
includedir=\${prefix}/include
Name: $name
Description: $name (carried by scripts/gpu_deps.sh)
Version: 0
Libs: $libs
Cflags: -I\${includedir}$inc
EOF
}

s_pack() {
  local out=${1:-$root/.gpu/deps.tar.xz}
  command -v apt-get >/dev/null || { echo "gpu_deps: apt-get is needed here to download the packages" >&2; exit 2; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/debs" "$tmp/root"
  # shellcheck disable=SC2086
  (cd "$tmp/debs" && apt-get download $PKGS >/dev/null 2>"$tmp/apt.log") ||
    { cat "$tmp/apt.log" >&2; echo "gpu_deps: apt-get download failed" >&2; exit 1; }
  for f in "$tmp"/debs/*.deb; do dpkg -x "$f" "$tmp/root"; done
  local r=$tmp/root
  rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/lintian" "$r/etc"
  find "$r" -name '*.a' -delete
  rm -f "$r/$ARCH_LIB"/openblas-pthread/liblapack* # tis calls BLAS only (libopenblas holds it)
  if [ -d "$r/lib/x86_64-linux-gnu" ]; then       # some packages still ship /lib: one library folder
    cp -a "$r/lib/x86_64-linux-gnu/." "$r/$ARCH_LIB/"
    rm -rf "$r/lib"
  fi
  rm -rf "$r/$ARCH_LIB/pkgconfig" "$r/$ARCH_LIB/openblas-pthread/pkgconfig" "$r/usr/share/pkgconfig"
  mkdir -p "$r/pkgconfig" "$r/bin"
  s_pc openblas "-L\${libdir}/openblas-pthread -lopenblas" " -I\${includedir}/x86_64-linux-gnu/openblas-pthread" \
    >"$r/pkgconfig/openblas.pc"
  s_pc libcjson "-L\${libdir} -lcjson" " -I\${includedir}/cjson" >"$r/pkgconfig/libcjson.pc"
  s_pc yaml-0.1 "-L\${libdir} -lyaml" >"$r/pkgconfig/yaml-0.1.pc"
  s_pc libprotobuf-c "-L\${libdir} -lprotobuf-c" >"$r/pkgconfig/libprotobuf-c.pc"
  s_pc libzmq "-L\${libdir} -lzmq" >"$r/pkgconfig/libzmq.pc"
  s_pc libmicrohttpd "-L\${libdir} -lmicrohttpd" >"$r/pkgconfig/libmicrohttpd.pc"
  # the two programs, through wrappers that find their libraries
  for p in protoc-c:usr/bin/protoc-c pkg-config:usr/bin/pkgconf; do
    printf '#!/bin/sh\nd=$(cd "$(dirname "$0")/.." && pwd)\nLD_LIBRARY_PATH="$d/%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/%s" "$@"\n' \
      "$ARCH_LIB" "${p#*:}" >"$r/bin/${p%%:*}"
    chmod +x "$r/bin/${p%%:*}"
  done
  ls "$tmp"/debs/*.deb | xargs -n1 basename >"$r/PACKAGES"
  mkdir -p "$(dirname "$out")"
  tar -C "$r" -cf - . | xz -T2 -6 >"$out"
  echo "gpu_deps: $(wc -l <"$r/PACKAGES") packages -> $out ($(du -h "$out" | cut -f1))"
}

s_unpack() {
  local tarball=$1 dir=$2
  [ -f "$tarball" ] || { echo "gpu_deps: $tarball is missing (run 'gpu_deps.sh pack' where apt works and carry it)" >&2; exit 2; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if command -v xz >/dev/null; then
    xz -dc "$tarball" | tar -C "$dir" -xf -
  else # no xz program: Python's lzma
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$tarball" "$dir"
  fi
  sed -i "s|@PREFIX@|$dir|g" "$dir"/pkgconfig/*.pc
  local lib=$dir/$ARCH_LIB
  cat >"$dir/env.sh" <<EOF
export PKG_CONFIG_PATH="$dir/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
export TIS_DEPS_LIB="$lib:$lib/openblas-pthread"
EOF
  # pkg-config: the machine's own if it has one, else the carried pkgconf
  local pkgc
  pkgc=$(command -v pkg-config || true)
  [ -n "$pkgc" ] || pkgc=$dir/bin/pkg-config
  # DT_RPATH (not RUNPATH): it also serves the libraries' own dependencies
  local ld="-Wl,--disable-new-dtags,-rpath,$lib:$lib/openblas-pthread,-rpath-link,$lib:$lib/openblas-pthread"
  printf '%s\n' "-DPKG_CONFIG_EXECUTABLE=$pkgc" "-DPROTOC_C=$dir/bin/protoc-c" \
    "-DCMAKE_EXE_LINKER_FLAGS=$ld" "-DCMAKE_SHARED_LINKER_FLAGS=$ld" >"$dir/cmake.args"
  echo "gpu_deps: unpacked into $dir ($(wc -l <"$dir/PACKAGES") packages)"
}

case "${1:-}" in
pack) shift; s_pack "$@" ;;
unpack) shift; [ $# -eq 2 ] || { echo "usage: gpu_deps.sh unpack TARBALL DIR" >&2; exit 2; }; s_unpack "$@" ;;
*) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
