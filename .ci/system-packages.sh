#!/usr/bin/env bash
# Debian packages the test suite needs. Idempotent; a no-op when everything is present.
set -euo pipefail
PKGS=(g++ make slurmctld slurmd slurm-client munge chromium)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
