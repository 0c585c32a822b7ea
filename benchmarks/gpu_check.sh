#!/usr/bin/env bash
# The GPU check (issue 15: "CUDA path kept device-agnostic; a GPU check runs when one is available"), prepared so
# that a session lent a GPU machine runs it in one call of the device tool:
#
#   here, once (the GPU machine reaches no package index), fetch what its image lacks into .whl/ (git-ignored):
#       bash benchmarks/gpu_check.sh fetch
#   there, with .whl carried (its python3 holds a CUDA build of torch, torch-geometric, networkx, scikit-learn):
#       bash benchmarks/gpu_check.sh run
#
# `run` writes under $OUT (./gpu_check_out without it):
#   cuda_tests.log        tests/utils/test_device.py: the same tasks and parameters, every family's meta-step, a whole
#                         `surf run` and `surf eval` on the GPU against the CPU
#   meta_step_cuda.json   benchmarks/bench_meta_step.py's cases on the GPU: s per meta-step, peak GPU memory, and
#   meta_step_cuda.log    the GPU's own matmul and streaming peaks (the roofline's reference)
# Budget: about 5 minutes of a 10-minute call (N = 100,000 is left out: run it alone if time is left).
set -uo pipefail
cd "$(dirname "$0")/.."
BINARY=(jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1)
SOURCE=(normflows==1.7.3)  # published as a source archive only: built into a wheel here (pure Python)

case "${1:-}" in
fetch)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${BINARY[@]}" &&
    python3 -m pip wheel -q --no-deps -w .whl "${SOURCE[@]}" &&
    ls .whl
    ;;
run)
    out="${OUT:-gpu_check_out}"
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 2
    export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
    timeout 240 python3 -m pytest -q -p no:cacheprovider tests/utils/test_device.py 2>&1 | tee "$out/cuda_tests.log"
    tests=$?
    timeout 240 python3 benchmarks/bench_meta_step.py --steps 3 --out "$out/meta_step_cuda.json" \
        --cases quickstart,paper-closed,compact-paper,compact-N1000,compact-N10000 2>&1 | tee "$out/meta_step_cuda.log"
    exit $((tests || $?))
    ;;
*)
    echo "usage: bash benchmarks/gpu_check.sh fetch|run" >&2
    exit 2
    ;;
esac
