"""Several cameras: one node serving N cameras against N single-camera nodes.

    python benchmarks/multi_camera.py                         # N = 1, 2, 4, 8; embedded model
    python benchmarks/multi_camera.py --cameras 4 --seconds 30 --modes shared

For each N, `shared` starts one `timesformer_node` with `cameras:=[cam0, ..., camN-1]` and
`separate` starts N single-camera nodes (each its own name and remapped `image`), all on the
CPU with the embedded model and a window for every frame (`sample_every 1`, `stride 1`). This
process publishes N cameras of 640x480 rgb8 frames at --rate Hz each (sensor-data QoS, stamped
with the wall clock, the cameras' phases spread over a frame period) and measures, for each
camera, the results per second and the latency from a frame's stamp to its result's arrival
here, over DDS on loopback. Drops (stale windows replaced by newer ones), frames received and
batch sizes come from the node's diagnostics (one status per camera, found by its `topic`;
one for the engine); memory is the nodes' resident set (VmRSS at the end, VmHWM peak, summed
over the nodes), CPU the nodes' user + system seconds per second of the run.
Writes benchmarks/results/multi_camera.json.
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
from timesformer_ros.interface import ENGINE_DIAGNOSTIC_NAME  # noqa: E402
from timesformer_ros.messages import dict_ns  # noqa: E402
from timesformer_ros.processes import (  # noqa: E402
    console_command, finish, keep_dds_on_loopback)

CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS     # utime + stime


def start_nodes(mode: str, cameras: list, env: dict) -> list:
    base = console_command('timesformer_node') + [
        '--ros-args', '--params-file', str(REPO / 'config' / 'timesformer.yaml'),
        '-p', 'device:=cpu', '-p', 'sample_every:=1', '-p', 'stride:=1']
    if mode == 'shared':
        commands = [base + ['-p', f'cameras:=[{",".join(cameras)}]'] +
                    [arg for c in cameras for arg in ('-r', f'{c}/image:=/{c}/image')]]
    else:
        commands = [base + ['-r', f'__node:=timesformer_{c}', '-r', f'image:=/{c}/image']
                    for c in cameras]
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for cmd in commands]


def result_topic(mode: str, camera: str) -> str:
    return f'/timesformer/{camera}/window' if mode == 'shared' \
        else f'/timesformer_{camera}/window'


def run(mode: str, count: int, args, env: dict) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    cameras = [f'cam{i}' for i in range(count)]
    nodes = start_nodes(mode, cameras, env)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=args.domain_id)
    bench = rclpy.create_node('multi_camera_bench', context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(bench)
    latencies = {c: [] for c in cameras}
    statuses, engine = {}, {}
    measuring = {'on': False}

    def on_result(camera, msg):
        received = time.time_ns()
        if measuring['on']:
            stamp = json.loads(msg.data)['header']['stamp']
            latencies[camera].append((received - dict_ns(stamp)) / 1e6)

    def on_diagnostics(msg):
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if status.name == ENGINE_DIAGNOSTIC_NAME:
                engine.update(values)
            elif 'topic' in values:
                statuses[values['topic'].strip('/').split('/')[0]] = values

    for camera in cameras:
        bench.create_subscription(String, result_topic(mode, camera),
                                  lambda m, c=camera: on_result(c, m), 100)
    bench.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 50)
    publishers = {c: bench.create_publisher(Image, f'/{c}/image', qos_profile_sensor_data)
                  for c in cameras}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (
            all(p.get_subscription_count() for p in publishers.values()) and
            len(statuses) == count):
        executor.spin_once(timeout_sec=0.05)
    # Frames built once (the pixels' conversion to the message's array is the publisher's
    # cost, not the node's); only the stamp changes.
    rng = np.random.default_rng(0)
    frames = {}
    for camera in cameras:
        frames[camera] = []
        for _ in range(4):
            msg = Image(height=480, width=640, encoding='rgb8', step=640 * 3)
            msg.data = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8).tobytes()
            msg.header.frame_id = camera
            frames[camera].append(msg)
    ticks = int((args.warmup_s + args.seconds) * args.rate)
    started = time.monotonic()
    baseline, cpu_before, published = {}, 0.0, {c: 0 for c in cameras}
    for tick in range(ticks):
        if tick == int(args.warmup_s * args.rate):
            measuring['on'] = True
            baseline = {c: dict(s) for c, s in statuses.items()}
            baseline['engine'] = dict(engine)
            cpu_before = sum(cpu_seconds(n.pid) for n in nodes)
            measure_started = time.monotonic()
        for index, camera in enumerate(cameras):
            # The cameras' phases spread over one frame period.
            due = started + (tick + index / count) / args.rate
            while time.monotonic() < due:
                executor.spin_once(timeout_sec=max(0.0, due - time.monotonic()))
            msg = frames[camera][tick % 4]
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10 ** 9)
            publishers[camera].publish(msg)
            if measuring['on']:
                published[camera] += 1
    measured_s = time.monotonic() - measure_started
    cpu = sum(cpu_seconds(n.pid) for n in nodes) - cpu_before
    rss = sum(proc_kib(n.pid, 'VmRSS') for n in nodes) / 1024
    peak = sum(proc_kib(n.pid, 'VmHWM') for n in nodes) / 1024
    end = time.monotonic() + max(2.0, 2.5 * args.diagnostics_period_s)
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    codes = []
    for node in nodes:
        node.send_signal(signal.SIGINT)
    for node in nodes:
        finish(node, 10)
        codes.append(node.returncode)
    bench.destroy_node()
    context.try_shutdown()

    def delta(camera, key):
        return int(statuses.get(camera, {}).get(key, 0)) - \
            int(baseline.get(camera, {}).get(key, 0))

    per_camera = {}
    for camera in cameras:
        values = latencies[camera]
        received = delta(camera, 'frames_received')
        per_camera[camera] = {
            'published': published[camera], 'received': received,
            'results': len(values), 'results_per_s': round(len(values) / measured_s, 2),
            'latency_p50_ms': round(float(np.percentile(values, 50)), 2) if values else None,
            'latency_p99_ms': round(float(np.percentile(values, 99)), 2) if values else None,
            'dropped': delta(camera, 'frames_dropped'),
            'refused': delta(camera, 'frames_refused'),
        }
    all_latencies = [v for c in cameras for v in latencies[c]]
    sizes = {}
    if mode == 'shared':
        before = dict(item.split(':') for item in
                      baseline.get('engine', {}).get('batch_sizes', '').split())
        after = dict(item.split(':') for item in engine.get('batch_sizes', '').split())
        sizes = {int(k): int(v) - int(before.get(k, 0)) for k, v in after.items()
                 if int(v) - int(before.get(k, 0))}
    rates = [c['results_per_s'] for c in per_camera.values()]
    return {
        'mode': mode, 'cameras': count, 'measured_s': round(measured_s, 2),
        'results_per_s_per_camera_min': min(rates), 'results_per_s_per_camera_max': max(rates),
        'latency_p50_ms': round(float(np.percentile(all_latencies, 50)), 2)
        if all_latencies else None,
        'latency_p99_ms': round(float(np.percentile(all_latencies, 99)), 2)
        if all_latencies else None,
        'published': sum(published.values()),
        'received': sum(c['received'] for c in per_camera.values()),
        'dropped': sum(c['dropped'] for c in per_camera.values()),
        'refused': sum(c['refused'] for c in per_camera.values()),
        'batch_sizes': dict(sorted(sizes.items())),
        'batch_inference_p50_ms': float(engine['inference_p50_ms']) if engine else None,
        'rss_mb': round(rss, 1), 'peak_rss_mb': round(peak, 1),
        'node_cpu_s_per_s': round(cpu / measured_s, 2),
        'model': engine.get('model') or next(iter(statuses.values()), {}).get('model'),
        'node_exit_codes': codes, 'per_camera': per_camera,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cameras', type=int, nargs='*', default=[1, 2, 4, 8])
    parser.add_argument('--modes', nargs='*', default=['shared', 'separate'],
                        choices=['shared', 'separate'])
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--seconds', type=float, default=15.0)
    parser.add_argument('--warmup-s', type=float, default=3.0)
    parser.add_argument('--diagnostics-period-s', type=float, default=1.0)
    parser.add_argument('--domain-id', type=int, default=62)
    args = parser.parse_args()

    keep_dds_on_loopback(checkout=REPO)
    env = {**os.environ, 'ROS_DOMAIN_ID': str(args.domain_id), 'PYTHONUNBUFFERED': '1'}
    runs = []
    for count in args.cameras:
        for mode in args.modes:
            runs.append(run(mode, count, args, env))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != 'per_camera'}),
                  file=sys.stderr)
    from importlib.metadata import version
    import torch
    result = {
        'benchmark': 'multi_camera', 'date': datetime.date.today().isoformat(),
        'device': 'cpu', 'rate_hz': args.rate, 'seconds': args.seconds,
        'frame': '640x480 rgb8', 'cpus': os.cpu_count(), 'python': platform.python_version(),
        'torch': torch.__version__, 'rclpy': version('rclpy'),
        'command': 'python ' + ' '.join(sys.argv), 'load_average_at_end': os.getloadavg(),
        'runs': runs,
    }
    report.write('multi_camera', result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
