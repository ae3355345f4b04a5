#!/bin/sh
# The build and runtime steps of docker/Dockerfile and docker/Dockerfile.loadtest, in one place:
# the Dockerfiles RUN these phases, and CI runs them on the host (Tests/e2e/test_docker.py), so
# the recipe cannot rot while no Docker engine is at hand.
#
#   build-steps.sh build-deps              apt packages the build stage needs (swift:6.3-bookworm)
#   build-steps.sh build DEST PRODUCT...   build PRODUCT(s), install them as DEST/usr/local/bin/PRODUCT
#                                          and the Swift runtime they load into DEST/usr/lib/swift/linux
#   build-steps.sh runtime-deps            on debian:bookworm-slim: the shared libraries the binaries
#                                          load, the non-root user, the spill directory
#   build-steps.sh check-runtime ROOT      every library ROOT's binaries load is in ROOT or comes from a
#                                          package runtime-deps installs or the base image has (Debian 12 host)
#
# Environment: BUILD_CONFIG (release | debug; default release), SCRATCH_PATH (SwiftPM scratch
# directory; default .build-docker under the source), SRC (the package; default: the current directory).
set -eu

# What the binaries load besides glibc: nghttp2 (h2), zstd (spill, bodies), zlib (gzip bodies).
RUNTIME_PACKAGES="libnghttp2-14 libzstd1 zlib1g libssl3"
# Already in debian:bookworm-slim (apt itself needs them).
BASE_PACKAGES="libc6 libgcc-s1 libstdc++6"
BUILD_PACKAGES="pkg-config libnghttp2-dev libzstd-dev zlib1g-dev"
USER_ID=10001
DATA_DIR=/var/lib/tracerelay
# Where the Swift runtime libraries go in the image (where swift:6.3-bookworm has them).
SWIFT_LIBS=/usr/lib/swift/linux

apt_install() {
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
  rm -rf /var/lib/apt/lists/*
}

phase=${1:-}
[ $# -gt 0 ] && shift
case "$phase" in
  build-deps)
    # shellcheck disable=SC2086  # word splitting of the package list is wanted
    apt_install $BUILD_PACKAGES
    ;;

  build)
    [ $# -ge 2 ] || { echo "usage: $0 build DEST PRODUCT..." >&2; exit 2; }
    dest=$1; shift
    src=${SRC:-$PWD}
    config=${BUILD_CONFIG:-release}
    scratch=${SCRATCH_PATH:-$src/.build-docker}
    mkdir -p "$dest/usr/local/bin" "$dest$SWIFT_LIBS"
    for product in "$@"; do
      # The same build as everywhere else (no --static-swift-stdlib: with Swift 6.3 it fails to link
      # Foundation, swiftlang/swift-package-manager#10564, and objects it compiles break later
      # dynamic links in the same scratch directory), so on a host this is a no-op after `swift build`.
      swift build --package-path "$src" --scratch-path "$scratch" -c "$config" --product "$product"
      bin=$(swift build --package-path "$src" --scratch-path "$scratch" -c "$config" --show-bin-path)
      install -m 0755 "$bin/$product" "$dest/usr/local/bin/$product"
      if [ "$config" = release ]; then strip "$dest/usr/local/bin/$product"; fi
      # The Swift runtime it loads (libswiftCore, Dispatch, Foundation …), copied from the toolchain
      # to $SWIFT_LIBS: the toolchain's own place in the swift image, so the binary's RUNPATH finds it.
      ldd "$bin/$product" | awk '$2 == "=>" && $3 ~ /\/swift\/linux\// { print $3 }' | while read -r lib; do
        cp -L "$lib" "$dest$SWIFT_LIBS/"
      done
      echo "installed $dest/usr/local/bin/$product ($config) and $(ls "$dest$SWIFT_LIBS" | wc -l) Swift runtime libraries"
    done
    ;;

  runtime-deps)
    # shellcheck disable=SC2086
    apt_install $RUNTIME_PACKAGES
    groupadd --system --gid "$USER_ID" tracerelay
    useradd --system --uid "$USER_ID" --gid "$USER_ID" --home-dir "$DATA_DIR" --shell /usr/sbin/nologin tracerelay
    mkdir -p "$DATA_DIR/spill"
    chown -R "$USER_ID:$USER_ID" "$DATA_DIR"
    ;;

  check-runtime)
    [ $# -eq 1 ] || { echo "usage: $0 check-runtime ROOT" >&2; exit 2; }
    root=$1
    allowed=" $RUNTIME_PACKAGES $BASE_PACKAGES "
    status=0
    for pkg in $RUNTIME_PACKAGES $BASE_PACKAGES; do
      # The host is Debian 12 like the runtime image: the names must be real packages there.
      if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q "install ok installed" \
         && ! apt-cache show "$pkg" >/dev/null 2>&1; then
        echo "runtime package $pkg is unknown to apt on this Debian host" >&2; status=1
      fi
    done
    for bin in "$root"/usr/local/bin/*; do
      # As in the image: the Swift runtime from ROOT, everything else from the system.
      deps=$(LD_LIBRARY_PATH="$root$SWIFT_LIBS" ldd "$bin")
      before=$status
      if echo "$deps" | grep -q "not found"; then
        echo "$bin: missing libraries:" >&2; echo "$deps" | grep "not found" >&2; status=1
      fi
      for lib in $(echo "$deps" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        case "$lib" in "$root"/*) continue ;; esac
        real=$(readlink -f "$lib")
        pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true)
        pkg=${pkg%%:*}
        case "$allowed" in
          *" $pkg "*) ;;
          *) echo "$bin loads $lib (package '${pkg:-none}'), which the runtime image does not have" >&2; status=1 ;;
        esac
      done
      if [ "$status" = "$before" ]; then echo "checked $bin: every library it loads is in the image"; fi
    done
    exit $status
    ;;

  *)
    echo "usage: $0 build-deps | build DEST PRODUCT... | runtime-deps | check-runtime ROOT" >&2
    exit 2
    ;;
esac
