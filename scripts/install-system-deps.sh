#!/usr/bin/env bash
# Installs the Debian packages the worker needs at run time, only when they are missing (idempotent).
set -euo pipefail
need=()
ldconfig -p | grep -q 'libMagickWand-6.Q16.so.6' || need+=(libmagickwand-6.q16-6)
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
