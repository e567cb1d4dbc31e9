# The fast subset of the asv suite that tools/bench_compare.sh and tools/bench_history.sh run (sourced:
# sets SUBSET, asv's -b arguments): the training step of every posterior family and objective at latent
# 16, every band kernel at d = 256 and batch 100 on each stencil, importance-sampled evaluation, and the
# Adam pass at the VAE's size.
SUBSET=(
    -b 'bench_training\.FamilyStep\.time_step\(.*, 16\)'
    -b "bench_band\.BandKernel\.time_kernel\(.*, 256, 100, "
    -b 'bench_evaluate\.ImportanceSampling\.time_importance_sampling'
    -b 'bench_kernels\.Adam\.time_update\(1310816\)'
)
# The rest of the suite, every benchmark and parameter outside SUBSET (tools/bench_history.sh with ALL=1):
# the other benchmarks whole, and the subset's four benchmarks at their other parameters.
REST=(
    -b '^(?!bench_band\.BandKernel\.time_kernel|bench_training\.FamilyStep\.time_step|bench_evaluate\.ImportanceSampling\.time_importance_sampling|bench_kernels\.Adam\.time_update(\(|$))'
    -b "bench_band\.BandKernel\.time_kernel\((?!.*, 256, 100, )"
    -b 'bench_training\.FamilyStep\.time_step\((?!.*, 16\))'
    -b 'bench_kernels\.Adam\.time_update\((?!1310816\))'
)
