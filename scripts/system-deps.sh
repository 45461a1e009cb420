#!/usr/bin/env bash
# Installs the Debian packages TeluCodec needs, only when they are missing.
#   ffmpeg, opus-tools: the evaluation's Opus reference (opusenc/opusdec) and decoding of
#                       formats libsndfile cannot read.
#   libsndfile1:        the soundfile wheel bundles its own copy; the system one is a fallback.
#   slurm-wlm, munge:   a real one-host SLURM (scripts/slurm-localhost.sh) on which the tests
#                       run launch/slurm_multinode.sbatch; users' clusters have their own.
set -euo pipefail
need=()
command -v ffmpeg  >/dev/null 2>&1 || need+=(ffmpeg)
command -v opusenc >/dev/null 2>&1 || need+=(opus-tools)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: please install ${need[*]} with your package manager" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "system-deps: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
