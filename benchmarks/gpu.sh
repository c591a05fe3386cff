#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md, in one go (base_8x224 on the first CUDA device).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export FASTDDS_DEFAULT_PROFILES_FILE=${FASTDDS_DEFAULT_PROFILES_FILE:-$PWD/dev/fastdds_localhost.xml}
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
"$PY" -m timesformer_ros.bench --preset base_8x224 --device cuda --batch-sizes 1 8 32
"$PY" benchmarks/node_latency.py --checkpoint preset:base_8x224 --device cuda --extra compile:=true
"$PY" benchmarks/bag_throughput.py --checkpoint preset:base_8x224 --device cuda --batch-size 32
