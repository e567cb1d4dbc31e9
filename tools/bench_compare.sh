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
# FACTOR (default 1.3) and ROUNDS (default 4) were chosen on this project's 2-core machine, where an
# unchanged pair of commits must not trip it (docs/performance.md, "Regression check": how often it did).
set -uo pipefail
BASE=${1:?usage: tools/bench_compare.sh BASE [HEAD]}
HEAD=${2:-HEAD}
FACTOR=${FACTOR:-1.3}
ROUNDS=${ROUNDS:-4}
CPUS=${CPUS:-0,1}
cd "$(dirname "$0")/../asv_bench" || exit 2
BASE=$(git rev-parse --verify "$BASE^{commit}") || exit 2
HEAD=$(git rev-parse --verify "$HEAD^{commit}") || exit 2
export OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_NUM_THREADS=1
# The machine as asv records it: the CPU model and the core count.
MACHINE=$(python3 -c "
import os, re
model = next((l.split(':', 1)[1] for l in open('/proc/cpuinfo') if l.startswith('model name')), 'cpu')
print(re.sub(r'[^A-Za-z0-9]+', '-', model.strip()).strip('-') + f'-{os.cpu_count()}cores')")
asv machine --yes --machine "$MACHINE" >/dev/null || exit 2
SUBSET=(
    -b 'bench_training\.FamilyStep\.time_step\(.*, 16\)'
    -b "bench_band\.BandKernel\.time_kernel\(.*, 256, 100, "
    -b 'bench_evaluate\.ImportanceSampling\.time_importance_sampling'
    -b 'bench_kernels\.Adam\.time_update\(1310816\)'
)
LOG=$(mktemp)
asv continuous --split --factor "$FACTOR" --interleave-rounds -a rounds="$ROUNDS" --cpu-affinity "$CPUS" \
    --machine "$MACHINE" --show-stderr "${SUBSET[@]}" "$BASE" "$HEAD" 2>&1 | grep -v "libmambapy\|_mamba_helpers" \
    | tee "$LOG"
status=${PIPESTATUS[0]}
if grep -q "PERFORMANCE DECREASED" "$LOG"; then
    rm -f "$LOG"
    exit 1
fi
rm -f "$LOG"
[ "$status" -eq 0 ] || exit 2
exit 0
