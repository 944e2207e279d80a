#!/usr/bin/env bash
# Debian packages the test suite needs: a compiler, Slurm + munge + slurmdbd + MariaDB (the Slurm
# tests start a real single-node cluster, with accounting for NeMo-Run's SlurmExecutor), chromium
# (the report is checked in a headless browser), and the real-text corpus builder's small preset
# (tests/test_realtext.py): manpages, libc6-dev, dict-devil, bible-kjv(-text), fortunes-it,
# fortunes-es. Idempotent; a no-op when everything is present. `--list` prints the packages.
set -euo pipefail
PKGS=(g++ make slurmctld slurmd slurm-client munge slurmdbd mariadb-server chromium
      manpages libc6-dev dict-devil bible-kjv-text bible-kjv fortunes-it fortunes-es)
if [ "${1:-}" = "--list" ]; then echo "${PKGS[*]}"; exit 0; fi
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
