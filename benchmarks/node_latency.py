"""Node latency at a camera rate: frame stamp -> result received, and drops.

    python benchmarks/node_latency.py                         # embedded motion model, CPU
    python benchmarks/node_latency.py --checkpoint preset:base_8x224 --device cuda

Starts `timesformer_node` as its own process (a window for every frame: sample_every 1,
stride 1), publishes 640x480 rgb8 frames at --rate Hz stamped with the wall clock, and measures,
for each result, the time from its frame's stamp to its arrival here, over DDS on loopback.
Drops come from the node's diagnostics. Writes benchmarks/results/node_latency_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from timesformer_ros.processes import console_command, keep_dds_on_loopback  # noqa: E402
from timesformer_ros.interface import DIAGNOSTIC_NAME  # noqa: E402
from timesformer_ros.messages import dict_ns  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default='')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--seconds', type=float, default=20.0)
    parser.add_argument('--warmup-s', type=float, default=3.0)
    parser.add_argument('--domain-id', type=int, default=61)
    parser.add_argument('--extra', nargs='*', default=[], help='more node -p name:=value')
    args = parser.parse_args()

    keep_dds_on_loopback(checkout=REPO)
    env = {**os.environ, 'ROS_DOMAIN_ID': str(args.domain_id), 'PYTHONUNBUFFERED': '1'}
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    cmd = console_command('timesformer_node') + [
        '--ros-args', '--params-file', str(REPO / 'config' / 'timesformer.yaml'),
        '-p', f'device:={args.device}', '-p', 'sample_every:=1', '-p', 'stride:=1']
    if args.checkpoint:
        cmd += ['-p', f'checkpoint:={args.checkpoint}']
    for item in args.extra:
        cmd += ['-p', item]
    node = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    bench = rclpy.create_node('latency_bench', context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(bench)
    latencies, diagnostics = [], []
    measuring = {'on': False}

    def on_result(msg):
        received = time.time_ns()
        stamp = json.loads(msg.data)['header']['stamp']
        if measuring['on']:
            latencies.append((received - dict_ns(stamp)) / 1e6)

    bench.create_subscription(String, '/timesformer/window', on_result, 50)
    bench.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: diagnostics.extend({kv.key: kv.value for kv in s.values} for s in m.status
                                     if s.name == DIAGNOSTIC_NAME), 10)
    pub = bench.create_publisher(Image, 'image', qos_profile_sensor_data)
    deadline = time.monotonic() + 120
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8).tobytes() for _ in range(8)]
    total = args.warmup_s + args.seconds
    count = int(total * args.rate)
    started = time.monotonic()
    baseline = None
    for i in range(count):
        if i == int(args.warmup_s * args.rate):
            measuring['on'] = True
            baseline = dict(diagnostics[-1]) if diagnostics else None
        msg = Image(height=480, width=640, encoding='rgb8', step=640 * 3)
        msg.data = frames[i % len(frames)]
        msg.header.frame_id = 'camera'
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10 ** 9)
        pub.publish(msg)
        due = started + (i + 1) / args.rate
        while time.monotonic() < due:
            executor.spin_once(timeout_sec=max(0.0, due - time.monotonic()))
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    node.send_signal(signal.SIGINT)
    output, _ = node.communicate(timeout=10)
    last = diagnostics[-1] if diagnostics else {}

    def delta(key):
        return int(last.get(key, 0)) - int((baseline or {}).get(key, 0))

    received = delta('frames_received')
    result = {
        'benchmark': 'node_latency', 'date': datetime.date.today().isoformat(),
        'device': args.device, 'model': last.get('model'), 'rate_hz': args.rate,
        'seconds': args.seconds, 'frame': '640x480 rgb8',
        'python': platform.python_version(), 'command': 'python ' + ' '.join(sys.argv),
        'results': len(latencies),
        'latency_p50_ms': round(float(np.percentile(latencies, 50)), 2) if latencies else None,
        'latency_p99_ms': round(float(np.percentile(latencies, 99)), 2) if latencies else None,
        'frames_received': received, 'frames_dropped': delta('frames_dropped'),
        'drop_rate': round(delta('frames_dropped') / received, 4) if received else None,
        'node_exit_code': node.returncode,
    }
    import torch
    result['torch'] = torch.__version__
    report.write(f'node_latency_{args.device.split(":")[0]}', result)
    if node.returncode != 0:
        print(output[-3000:], file=sys.stderr)
    bench.destroy_node()
    context.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
