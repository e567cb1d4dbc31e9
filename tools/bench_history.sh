#!/usr/bin/env bash
# Append this machine's speed of main's commits to the history in asv_bench/results/MACHINE/ and publish
# the page (asv_bench/.asv/html, `asv preview` serves it):
#
#   tools/bench_history.sh [RANGE [ASV_ARGS...]]   # default main~30..main: the last 30 commits of main
#
# Commits this machine already has are skipped (a later run appends the new ones); a commit whose suite
# lacks a benchmark of the subset skips that one. ALL=1 runs the rest of the suite instead (tools/bench_subset.sh's
# REST: every benchmark and parameter outside the subset), measuring it again where a commit has it: about 10
# minutes a commit on a 2-core machine at asv's default timing; ASV_ARGS such as `-a rounds=1 -a
# warmup_time=0.02 -a "repeat=(1,5,2.0)"` shorten that to 2-3 minutes. Run it on a quiet machine: pinned to
# CPUS (0,1), OpenBLAS at one thread.
set -uo pipefail
RANGE=${1:-main~30..main}
shift $(( $# > 0 ? 1 : 0 ))
CPUS=${CPUS:-0,1}
cd "$(dirname "$0")/../asv_bench" || exit 2
export OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_NUM_THREADS=1
MACHINE=$(../tools/bench_machine.sh) || exit 2
source ../tools/bench_subset.sh
SKIP=(--skip-existing-commits)
[ "${ALL:-0}" = 1 ] && { SUBSET=("${REST[@]}"); SKIP=(); }
asv run --machine "$MACHINE" "${SKIP[@]}" --cpu-affinity "$CPUS" --show-stderr "${SUBSET[@]}" "$@" "$RANGE" \
    2>&1 | grep -v "libmambapy\|_mamba_helpers"
status=${PIPESTATUS[0]}
asv publish 2>&1 | grep -v "libmambapy\|_mamba_helpers" | tail -n 3
exit "$status"
