"""Start-up of the node and what it is made of.

The stages: process start -> subscribed -> ready -> first result.

    python benchmarks/startup.py                      # embedded model, CPU, 5 runs
    python benchmarks/startup.py --checkpoint preset:base_8x224 --device cuda

Each run starts `timesformer_node` with config/timesformer.yaml as its own process and times, from
the moment the process is started: its subscription appearing on the image topic, the 'listening
on' line of its log (ready), and the first `~/window` received while a camera publishes 640x480
rgb8 at 30 Hz from the moment the node subscribes. The breakdown comes from separate measurements
of its parts, each the median over the runs: the interpreter alone (`python -c pass`; in a venv of
the ROS 2 PyPI wheels it starts twice: their bootstrap hook re-executes it to set LD_LIBRARY_PATH),
importing the node's module (timed inside a fresh interpreter), and loading the checkpoint and
warming the engine up in this process. The rest of `ready` is rclpy's start (DDS participant) and
the node's construction; `subscribed` (as the camera sees it) adds DDS discovery. The first window
needs `num_frames` sampled frames (8 at the embedded model's 10 fps: 0.7 s of camera time)
before it can run.
Writes benchmarks/results/startup_<device>.json.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402 - benchmarks/report.py, beside this script
from timesformer_ros.processes import console_command, keep_dds_on_loopback  # noqa: E402


def interpreter_s(env: dict) -> float:
    """Time a bare interpreter's start and exit (`python -c pass`)."""
    started = time.monotonic()
    subprocess.run([sys.executable, '-c', 'pass'], env=env, check=True)
    return time.monotonic() - started


def import_s(env: dict) -> float:
    """Time importing the node's module inside a fresh interpreter.

    Not its exit, which unloads PyTorch too.
    """
    code = ('import time; t = time.perf_counter(); import timesformer_ros.node; '
            'print(time.perf_counter() - t)')
    return float(subprocess.run([sys.executable, '-c', code], env=env, check=True,
                                capture_output=True, text=True).stdout.split()[-1])


def model_load_s(checkpoint: str, device: str) -> tuple:
    """(load the checkpoint, build + warm up the engine), in this process."""
    from timesformer_ros.checkpoints import embedded_checkpoint, load_checkpoint
    from timesformer_ros.engine import Engine
    started = time.monotonic()
    ckpt = load_checkpoint(checkpoint or str(embedded_checkpoint()))
    loaded = time.monotonic()
    Engine(ckpt, device=device, max_batch=1)
    return loaded - started, time.monotonic() - loaded


def one_start(args, domain_id: int) -> dict:
    """One start of the node on a domain of its own, so no run sees another's endpoints."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    env = {**os.environ, 'ROS_DOMAIN_ID': str(domain_id), 'PYTHONUNBUFFERED': '1'}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    bench = rclpy.create_node('startup_bench', context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(bench)
    # A camera that is already running when the node starts: its participant is not new.
    settle = time.monotonic() + args.camera_up_s
    while time.monotonic() < settle:
        executor.spin_once(timeout_sec=0.05)
    cmd = console_command('timesformer_node') + [
        '--ros-args', '--params-file', str(REPO / 'config' / 'timesformer.yaml'),
        '-p', f'device:={args.device}']
    if args.checkpoint:
        cmd += ['-p', f'checkpoint:={args.checkpoint}']
    results = []
    bench.create_subscription(String, '/timesformer/window',
                              lambda m: results.append(time.monotonic()), 10)
    pub = bench.create_publisher(Image, 'image', qos_profile_sensor_data)
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8).tobytes()
    started = time.monotonic()
    node = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    times = {}

    def read_log():
        for line in node.stdout:
            if 'ready' not in times and 'listening on' in line:
                times['ready'] = time.monotonic() - started

    reader = threading.Thread(target=read_log)
    reader.start()
    deadline = started + 120
    next_frame = None
    while not results and time.monotonic() < deadline:
        if next_frame is None and pub.get_subscription_count():
            times['subscribed'] = time.monotonic() - started
            next_frame = time.monotonic()
        if next_frame is not None and time.monotonic() >= next_frame:
            msg = Image(height=480, width=640, encoding='rgb8', step=640 * 3, data=frame)
            msg.header.frame_id = 'camera'
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10 ** 9)
            pub.publish(msg)
            next_frame += 1 / 30
        executor.spin_once(timeout_sec=0.005)
    times['first_result'] = results[0] - started if results else None
    node.send_signal(signal.SIGINT)
    node.wait(timeout=20)
    reader.join()
    bench.destroy_node()
    context.try_shutdown()
    return {k: round(v, 3) if v is not None else None for k, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint', default='')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--camera-up-s', type=float, default=5.0,
                        help='how long the camera runs before the node starts')
    parser.add_argument('--domain-id', type=int, default=63)
    args = parser.parse_args()

    keep_dds_on_loopback(checkout=REPO)
    env = {**os.environ, 'ROS_DOMAIN_ID': str(args.domain_id), 'PYTHONUNBUFFERED': '1'}
    interpreter = [interpreter_s(env) for _ in range(args.runs)]
    imports = [import_s(env) for _ in range(args.runs)]
    load, warm = zip(*(model_load_s(args.checkpoint, args.device) for _ in range(args.runs)))
    runs = [one_start(args, args.domain_id + i) for i in range(args.runs)]

    def median(values):
        values = [v for v in values if v is not None]
        return round(float(np.median(values)), 3) if values else None

    import torch
    result = {
        'benchmark': 'startup', 'date': datetime.date.today().isoformat(),
        'device': args.device, 'checkpoint': args.checkpoint or 'embedded',
        'python': platform.python_version(), 'torch': torch.__version__,
        'command': 'python ' + ' '.join(sys.argv), 'runs': runs,
        'median_s': {key: median(r.get(key) for r in runs)
                     for key in ('subscribed', 'ready', 'first_result')},
        'parts_median_s': {'interpreter': median(interpreter),
                           'imports': median(imports),
                           'checkpoint_load': median(load), 'engine_warm_up': median(warm)},
    }
    report.write(f'startup_{args.device.split(":")[0]}', result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
