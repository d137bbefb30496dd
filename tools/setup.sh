#!/usr/bin/env bash
# Installs the system libraries SanaEdge builds against (Debian/Ubuntu), only when missing.
set -euo pipefail
missing=()
for pkg in libopenblas-dev libzstd-dev libpng-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
