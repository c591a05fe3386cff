"""Hostile frames against the node: each attack's peak memory and outcome.

    python benchmarks/hostile.py                  # the embedded model, CPU, both transports

For each attack (the ones test/test_hostile_node.py sends), a fresh `timesformer_node` (the
embedded model, config/timesformer.yaml, reliable input QoS) is warmed up with 30 good frames,
its peak RSS is reset (Linux clear_refs), the hostile frame is sent 5 times, and after 3 s
this records: the peak resident memory above the warmed-up size (VmHWM - VmRSS), whether the
node is alive, the longest silence of /diagnostics (period 1 s), the refusals it counted, and
whether good frames sent afterwards get results. Writes benchmarks/results/hostile.json.
"""

from __future__ import annotations

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
sys.path.insert(0, str(REPO / 'test'))     # the attacks are the tests' own

import report  # noqa: E402 - benchmarks/report.py, beside this script
from timesformer_ros.interface import DIAGNOSTIC_NAME  # noqa: E402
from timesformer_ros.processes import (  # noqa: E402
    console_command, finish, keep_dds_on_loopback)

DOMAIN_ID = 141


def run_attack(name: str, transport: str, make, env: dict) -> dict:
    """Start a node, warm it up, send `make(stamp)` 5 times; return what happened."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String
    from conftest import reset_peak_rss, status_kib
    from test_hostile_node import good_frame

    cmd = console_command('timesformer_node') + [
        '--ros-args', '--params-file', str(REPO / 'config' / 'timesformer.yaml'),
        '-p', 'device:=cpu', '-p', f'input_transport:={transport}', '-p', 'qos:=reliable',
        '-p', 'qos_depth:=50', '-r', 'image:=/cam/image',
        '-r', 'image/compressed:=/cam/image/compressed']
    node = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    bench = rclpy.create_node('hostile_bench', context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(bench)
    windows, diag_times, diagnostics = [], [], []

    def on_diag(msg):
        diag_times.append(time.monotonic())
        diagnostics.extend({kv.key: kv.value for kv in s.values} for s in msg.status
                           if s.name == DIAGNOSTIC_NAME)

    bench.create_subscription(String, '/timesformer/window', windows.append, 50)
    bench.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    pub = bench.create_publisher(CompressedImage if transport == 'compressed' else Image,
                                 '/cam/image/compressed' if transport == 'compressed'
                                 else '/cam/image', reliable)

    def spin(seconds, until=lambda: False):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            executor.spin_once(timeout_sec=0.02)

    spin(60, lambda: pub.get_subscription_count() > 0)
    stamp = [1_000_000_000_000]

    def good(count):
        for i in range(count):
            stamp[0] += 33_333_333
            pub.publish(good_frame(i, stamp[0], transport))
            spin(1 / 30)

    good(30)
    spin(20, lambda: len(windows) >= 3)
    spin(1.0)
    reset_peak_rss(node.pid)
    warmed = status_kib(node.pid, 'VmRSS')
    before = dict(diagnostics[-1]) if diagnostics else {}
    started = time.monotonic()
    for _ in range(5):
        stamp[0] += 33_333_333
        pub.publish(make(stamp[0]))
        spin(0.01)
    spin(3.0)
    alive = node.poll() is None
    peak = status_kib(node.pid, 'VmHWM') if alive else None
    after_attack = len(windows)
    stamp[0] += 5_000_000_000
    if alive:
        good(30)
        spin(20, lambda: len(windows) >= after_attack + 3)
    times = [t for t in diag_times if t >= started]
    last = diagnostics[-1] if diagnostics else {}
    refused = {k[len('refused_'):]: int(v) - int(before.get(k, 0)) for k, v in last.items()
               if k.startswith('refused_') and int(v) - int(before.get(k, 0))}
    node.send_signal(signal.SIGINT)
    finish(node, 10)
    bench.destroy_node()
    context.try_shutdown()
    return {'attack': name, 'transport': transport,
            'peak_above_warm_mb': None if peak is None else round((peak - warmed) / 1024, 1),
            'alive': alive, 'refused': refused,
            'longest_diagnostics_silence_s': round(float(max(np.diff(times), default=0)), 2)
            if times else None,
            'results_after': len(windows) > after_attack, 'exit_code': node.returncode}


def main() -> int:
    from test_hostile_node import _compressed, compressed_attacks, raw_attacks
    # The node on its own: not the OpenCV limits this process's import of the package set.
    env = {k: v for k, v in os.environ.items() if not k.startswith('OPENCV_IO_')}
    env = keep_dds_on_loopback({**env, 'ROS_DOMAIN_ID': str(DOMAIN_ID)}, checkout=REPO)
    keep_dds_on_loopback(checkout=REPO)
    rows = []
    for name, fmt, data in compressed_attacks():
        rows.append(run_attack(name, 'compressed',
                               lambda s, f=fmt, d=data: _compressed(f, d, s), env))
        print(json.dumps(rows[-1]), flush=True)
    for name, msg in raw_attacks(1_000_000_000_000):
        def make(stamp, m=msg):
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            return m
        rows.append(run_attack(name, 'raw', make, env))
        print(json.dumps(rows[-1]), flush=True)
    import torch
    report.write('hostile', {
        'benchmark': 'hostile', 'date': datetime.date.today().isoformat(),
        'python': platform.python_version(), 'torch': torch.__version__,
        'command': 'python ' + ' '.join(sys.argv), 'attacks': rows}, echo=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
