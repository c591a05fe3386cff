"""benchmarks/gpu.sh runs where no ROS is: a CPU dry run with only what a plain GPU server has.

The GPU server's python3 has torch, timm, einops, transformers and onnxruntime, and no rclpy,
ROS messages, rosbags or mcap (PyYAML it has: timm needs it); here those are hidden from every
Python the script starts (transformers' reference is left out, for time).
The engine and ONNX Runtime figures must come out, and the parts that need the rest must say
that they were skipped and why.
"""

import re
import subprocess
import sys

from conftest import REPO, hiding_env
from test_code import ROS_PACKAGES

HIDDEN = {*ROS_PACKAGES, 'diagnostic_msgs', 'rosbags', 'rosbags_image', 'mcap', 'ray',
          'skimage'}


def test_a_cpu_dry_run_without_ros_and_bag_libraries_gives_the_engine_figures(tmp_path):
    env = hiding_env(tmp_path / 'hide', HIDDEN)
    env.update(PY=sys.executable, DEVICE='cpu', PRESET='tiny', BATCHES='1 2', ITERS='3',
               BUDGET_S='0.2', RUNS='cpu', RESULTS=str(tmp_path / 'results'),
               BENCH_FLAGS='--no-reference')
    result = subprocess.run(['bash', str(REPO / 'benchmarks' / 'gpu.sh')], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for batch in (1, 2):
        assert f'| engine (cpu in float32, with attention summaries) | {batch} |' in out, out
        for engine in ('PyTorch float32', 'ONNX Runtime cpu float32'):
            assert f'| tiny | {engine} | {batch} |' in out, out
    assert {p.name for p in (tmp_path / 'results').iterdir()} == {
        'engine_tiny_cpu.json', 'onnx_runtime_tiny_cpu.json'}
    assert re.search(r'skipped node_latency: it needs rclpy .*; rclpy cannot be imported', out)
    assert re.search(r'skipped bag_throughput: it needs rosbags .*; rosbags cannot be imported',
                     out)
