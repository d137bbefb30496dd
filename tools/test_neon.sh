#!/usr/bin/env bash
# Cross-compiles the C kernels for aarch64 and runs tools/kernel_check.c under qemu-user: every NEON family
# (with and without the dot-product extension) against the scalar reference on odd and aligned shapes.
# Installs gcc-aarch64-linux-gnu and qemu-user with apt-get when missing. Takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
aarch64-linux-gnu-gcc -O2 -Wall -Wno-unused-function -static \
    -ISources/CSanaKernels/include -ISources/CSanaKernels \
    tools/kernel_check.c Sources/CSanaKernels/*.c -lpthread -lm -o "$out/kernel_check"

# "max" has the dot-product extension (neon-dotprod and neon are both checked); Cortex-A53 has not.
for cpu in max cortex-a53; do
    echo "== qemu-aarch64 -cpu $cpu"
    qemu-aarch64 -cpu "$cpu" "$out/kernel_check"
done
