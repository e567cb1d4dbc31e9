#!/usr/bin/env bash
# Did a change make gvae slower? asv continuous on a fast subset of the suite, BASE against HEAD:
#
#   tools/bench_compare.sh BASE [HEAD]        # commits, branches or tags; HEAD by default
#
# Exit 0: nothing slower; 1: asv found a benchmark slower by more than FACTOR ("PERFORMANCE DECREASED", its
# table printed); 2: the comparison itself failed (a build, a benchmark that broke).
#
# The subset: the training step of every posterior family and objective at latent 16, every band kernel
# at d = 256 and batch 100 on each stencil, importance-sampled evaluation, and the Adam pass at the VAE's
# size. As scikit-image's benchmark job does: OpenBLAS (and MKL, OpenMP) at one thread. The benchmarks
# run pinned to CPUS (cores 0 and 1 by default), BASE and HEAD interleaved round by round, so that a
# drift of the machine's speed falls on both.
#
# FACTOR (default 1.2) and ROUNDS (default 4) were chosen on this project's quiet 2-core VM (family 6, model
# 167): three unchanged pairs of commits moved no benchmark by more than 1.13x, and a planted 30% slowdown of
# one kernel showed as 1.28-1.38x (docs/notes/2026-11-performance-regression-check.md). The model-207 VM is noisier:
# there unchanged pairs tripped 1.3.
set -uo pipefail
BASE=${1:?usage: tools/bench_compare.sh BASE [HEAD]}
HEAD=${2:-HEAD}
FACTOR=${FACTOR:-1.2}
ROUNDS=${ROUNDS:-4}
CPUS=${CPUS:-0,1}
cd "$(dirname "$0")/../asv_bench" || exit 2
BASE=$(git rev-parse --verify "$BASE^{commit}") || exit 2
HEAD=$(git rev-parse --verify "$HEAD^{commit}") || exit 2
export OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_NUM_THREADS=1
MACHINE=$(../tools/bench_machine.sh) || exit 2
source ../tools/bench_subset.sh
# asv.conf.json with its results elsewhere (.asv/compare-results): a comparison is not the history in
# asv_bench/results/ (tools/bench_history.sh), and BASE or HEAD may be off main. The same environments.
CONF=.asv/compare.conf.json
mkdir -p .asv
python3 - "$CONF" <<'PY' || exit 2
import json, os, sys
from asv import util
conf = util.load_json("asv.conf.json", js_comments=True)
here = os.getcwd()
for key in ("repo", "benchmark_dir", "env_dir", "html_dir"):
    conf[key] = os.path.normpath(os.path.join(here, conf[key]))
conf["results_dir"] = os.path.join(here, ".asv", "compare-results")
json.dump(conf, open(sys.argv[1], "w"), indent=1)
PY
LOG=$(mktemp)
asv continuous --config "$CONF" --split --factor "$FACTOR" --interleave-rounds -a rounds="$ROUNDS" \
    --cpu-affinity "$CPUS" --machine "$MACHINE" --show-stderr "${SUBSET[@]}" "$BASE" "$HEAD" 2>&1 \
    | grep -v "libmambapy\|_mamba_helpers" | tee "$LOG"
status=${PIPESTATUS[0]}
if grep -q "PERFORMANCE DECREASED" "$LOG"; then
    rm -f "$LOG"
    exit 1
fi
rm -f "$LOG"
[ "$status" -eq 0 ] || exit 2
exit 0
