#!/usr/bin/env bash
# Installs the Debian packages given as arguments when they are missing.
# As root it uses apt-get; otherwise it says what to install and carries on, so a
# machine that already has them (or a container built from the Dockerfile) works too.
set -euo pipefail

missing=()
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine has no package lists yet; refresh them once.
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/shardsnap-apt.log 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y --no-install-recommends "${missing[@]}"
  fi
else
  echo "warning: missing system packages: ${missing[*]} (run as root or install them with apt-get)" >&2
fi
