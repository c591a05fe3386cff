#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md, in one go (base_8x224 on the first CUDA device): the engine
# against transformers, ONNX Runtime (TensorRT FP16, CUDA EP) against the PyTorch engine in bf16,
# the node's latency and bag throughput.
#
# Runs with .venv's python where there is one, else with the python3 of a plain GPU server that
# has torch, timm, einops, transformers, onnx, onnxscript and onnxruntime-gpu and no ROS: the
# checkout is put on PYTHONPATH, and each part that needs what that python lacks (rclpy for the
# node, rosbags/mcap for bags) prints "skipped NAME: ..." with the reason and the run goes on;
# a part that fails is named at the end (exit status 1). PY, DEVICE, PRESET, BATCHES, ITERS,
# BUDGET_S, RUNS, RESULTS (where the engine and ONNX Runtime JSON go) and BENCH_FLAGS (more
# timesformer_bench flags) override the defaults (CI runs a CPU dry run:
# test/test_gpu_script.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-base_8x224}
BATCHES=${BATCHES:-1 8 32}
ITERS=${ITERS:-50}
BUDGET_S=${BUDGET_S:-4}
RUNS=${RUNS:-tensorrt:fp16 cuda}
RESULTS=${RESULTS:-benchmarks/results}
BENCH_FLAGS=${BENCH_FLAGS:-}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$PWD/dev/fastdds_localhost.xml}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}

# The first of the modules "$PY" does not have, and why (nothing when it has them all). Found,
# not imported: importing torch twice per part would double the time of a short run.
missing() {
    "$PY" - "$@" <<'PYTHON'
import importlib.util
import sys
for name in sys.argv[1:]:
    try:
        found = importlib.util.find_spec(name) is not None
        why = 'is not installed'
    except Exception as exc:  # noqa: BLE001 - any failure to find it is a reason to skip
        found, why = False, f'cannot be imported ({type(exc).__name__}: {exc})'
    if not found:
        print(f'{name} {why}')
        break
PYTHON
}

# part NAME MODULES... -- COMMAND...: run COMMAND, or say why it was skipped.
part() {
    local name=$1 modules=() why
    shift
    while [ "$1" != -- ]; do modules+=("$1"); shift; done
    shift
    echo
    echo "== $name"
    why=$(missing "${modules[@]}")
    if [ -n "$why" ]; then
        echo "skipped $name: it needs ${modules[*]}; $why"
        return 0
    fi
    "$@" || { status=$?; failed+=("$name"); echo "failed $name: exit status $status"; }
}
failed=()

part engine torch timm einops -- \
    "$PY" -m timesformer_ros.bench --preset "$PRESET" --device "$DEVICE" --batch-sizes $BATCHES \
    --iters "$ITERS" --budget-s "$BUDGET_S" --json "$RESULTS/engine_${PRESET}_$DEVICE.json" \
    $BENCH_FLAGS
part onnx_runtime torch onnx onnxscript onnxruntime -- \
    "$PY" benchmarks/onnx_runtime.py --models "$PRESET" --device "$DEVICE" --runs $RUNS \
    --batch-sizes $BATCHES --iters "$ITERS" --budget-s "$BUDGET_S" \
    --json "$RESULTS/onnx_runtime_${PRESET}_$DEVICE.json"
part node_latency rclpy sensor_msgs vision_msgs yaml -- \
    "$PY" benchmarks/node_latency.py --checkpoint "preset:$PRESET" --device "$DEVICE" \
    --extra compile:=true
part bag_throughput rosbags mcap yaml -- \
    "$PY" benchmarks/bag_throughput.py --checkpoint "preset:$PRESET" --device "$DEVICE" \
    --batch-size 32
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu.sh: failed: ${failed[*]}" >&2
    exit 1
fi
