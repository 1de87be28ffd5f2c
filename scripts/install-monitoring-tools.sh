#!/usr/bin/env bash
# Debian's prometheus package (Prometheus 2.42 and promtool), for tests/monitoring: promtool checks and unit-tests
# deploy/prometheus/alerts.yml, and a real Prometheus scrapes a worker. Installed only when missing; it does not
# start a server by itself (no systemd here). Needs root and apt (as in CI and on these machines).
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  echo "[monitoring-tools] up to date: $(promtool --version 2>&1 | head -n 1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 ||
  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
echo "[monitoring-tools] installed: $(promtool --version 2>&1 | head -n 1)"
