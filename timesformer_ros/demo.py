"""`make demo`: the node with the embedded model, fed by the synthetic camera, scored live.

Starts `timesformer_node` (config/timesformer.yaml, the embedded motion model) and
`timesformer_synthetic_camera` as separate processes talking over DDS, prints one line per
window (time, true motion, published label, score, latency) and one per action that starts
or ends (`~/events`), and after `--duration` seconds a summary: accuracy against the camera's
truth topic, the action segments against the true ones (segmental F1, edit score, onset
delay), latency p50/p99, frames dropped. It also
writes demo_output/window.png: the frames of one window with the spatial attention blended in,
and the temporal weights as bars.

Accuracy counts windows whose frames all show one motion ("clean" windows); windows that
straddle a change of motion are listed but have no single right answer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .interface import DIAGNOSTIC_NAME
from .messages import dict_ns, stamp_ns
from .processes import console_command, finish, keep_dds_on_loopback

# Camera frames kept for the picture: the last 4 s at 30 Hz (the windows of the embedded model
# span 0.47 s), so memory stays the same however long the demo runs.
KEEP_FRAMES = 120


class RecentFrames(dict):
    """The newest `limit` image messages by stamp (ns); older ones are forgotten."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def add(self, stamp: int, msg):
        self[stamp] = msg
        while len(self) > self.limit:
            del self[next(iter(self))]        # insertion order: the oldest first


def _env(domain_id: int) -> dict:
    # Run from a checkout's root (`make demo`), DDS stays on loopback with its
    # dev/fastdds_localhost.xml; installed elsewhere, nothing is set.
    env = keep_dds_on_loopback(dict(os.environ), checkout=Path.cwd())
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['PYTHONUNBUFFERED'] = '1'
    return env


def draw_window(frames: Sequence[np.ndarray], prediction, path: Path, title: str):
    """Frames of a window with attention blended in, and temporal weights as bars."""
    import cv2
    from .outputs import overlay
    tiles = [cv2.resize(overlay(f, s), (160, 160), interpolation=cv2.INTER_AREA)
             for f, s in zip(frames, prediction.spatial)]
    strip = np.concatenate(tiles, axis=1)
    bars = np.full((90, strip.shape[1], 3), 255, np.uint8)
    weights = np.asarray(prediction.temporal)
    top = max(float(weights.max()), 1e-6)
    for i, w in enumerate(weights):
        h = int(70 * w / top)
        cv2.rectangle(bars, (i * 160 + 50, 80 - h), (i * 160 + 110, 80), (40, 90, 200), -1)
        cv2.putText(bars, f'{w:.2f}', (i * 160 + 55, 88), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 0), 1)
    header = np.full((30, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(header, title, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    image = np.concatenate([header, strip, bars], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f'could not write {path}')


def run(duration: float, seed: int, domain_id: int, out_dir: Path,
        checkpoint: Optional[str] = None) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import (
        DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from vision_msgs.msg import LabelInfo

    env = _env(domain_id)
    keep_dds_on_loopback(checkout=Path.cwd())
    # The node's defaults are config/timesformer.yaml's (test_first_day checks it): no params file,
    # so the demo runs the same wherever the package is installed.
    node_cmd = console_command('timesformer_node') + ['--ros-args', '-p', 'device:=cpu']
    if checkpoint:
        node_cmd += ['-p', f'checkpoint:={checkpoint}']
    camera_cmd = console_command('timesformer_synthetic_camera') + [
        '--ros-args', '-p', f'seed:={seed}', '-p', 'rate:=30.0']
    log_dir = out_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    node_log = open(log_dir / 'node.log', 'w')
    camera_log = open(log_dir / 'camera.log', 'w')
    node = subprocess.Popen(node_cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT)

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    listener = rclpy.create_node('demo_listener', context=context)
    truth, results, diagnostics, events, label_info = {}, [], [], [], []
    frames = RecentFrames(KEEP_FRAMES)
    listener.create_subscription(
        String, 'motion', lambda m: truth.__setitem__(
            dict_ns(json.loads(m.data)['stamp']), json.loads(m.data)['label']), 200)
    listener.create_subscription(
        Image, 'image', lambda m: frames.add(stamp_ns(m.header), m),
        qos_profile_sensor_data)
    listener.create_subscription(String, '/timesformer/window',
                                 lambda m: results.append(json.loads(m.data)), 50)
    listener.create_subscription(String, '/timesformer/events',
                                 lambda m: events.append(json.loads(m.data)),
                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    listener.create_subscription(LabelInfo, '/timesformer/label_info', label_info.append,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                            durability=DurabilityPolicy.TRANSIENT_LOCAL))
    listener.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: diagnostics.extend({kv.key: kv.value for kv in s.values} for s in m.status
                                     if s.name == DIAGNOSTIC_NAME), 10)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(listener)

    def spin_until(condition, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            executor.spin_once(timeout_sec=0.05)
        return condition()

    print('starting the node (embedded motion model) and the synthetic camera ...', flush=True)
    if not spin_until(lambda: diagnostics or node.poll() is not None, 60):
        raise RuntimeError(f'the node did not start; see {log_dir / "node.log"}')
    if node.poll() is not None:
        raise RuntimeError(f'the node exited with code {node.returncode}; see '
                           f'{log_dir / "node.log"}')
    camera = subprocess.Popen(camera_cmd, env=env, stdout=camera_log, stderr=subprocess.STDOUT)
    print(f'{"time s":>7} {"true motion":<13} {"published":<13} {"score":>5} '
          f'{"latency ms":>10}', flush=True)
    started = time.monotonic()
    shown = shown_events = 0
    rows = []
    try:
        while time.monotonic() - started < duration:
            executor.spin_once(timeout_sec=0.05)
            while shown < len(results):
                result = results[shown]
                shown += 1
                start, end = dict_ns(result['window']['start']), dict_ns(result['window']['end'])
                labels = {label for stamp, label in truth.items() if start <= stamp <= end}
                true = truth.get(end, '?')
                top = result['results'][0]
                clean = len(labels) == 1 and true != '?'
                rows.append((result, true, clean))
                mark = '' if clean else '  (motion changes within the window)'
                ok = 'ok ' if top['class_name'] == true else '   '
                print(f'{time.monotonic() - started:7.1f} {true:<13} {top["class_name"]:<13} '
                      f'{top["score"]:5.2f} {result["latency_ms"]:10.1f} {ok}{mark}',
                      flush=True)
            for event in events[shown_events:]:
                print(f'{time.monotonic() - started:7.1f} {_event_text(event)}', flush=True)
            shown_events = len(events)
    finally:
        camera.send_signal(signal.SIGINT)
        spin_until(lambda: False, 1.5)   # let the last diagnostics arrive
        node.send_signal(signal.SIGINT)
        for proc in (camera, node):
            finish(proc, 5)
        node_log.close()
        camera_log.close()

    clean = [(r, t) for r, t, c in rows if c]
    correct = sum(r['results'][0]['class_name'] == t for r, t in clean)
    latencies = [r['latency_ms'] for r, _, _ in rows]
    last = diagnostics[-1] if diagnostics else {}
    summary = {
        'duration_s': duration, 'windows': len(rows), 'clean_windows': len(clean),
        'accuracy': correct / len(clean) if clean else 0.0,
        'chance': 1 / len(label_info[-1].class_map) if label_info else None,
        'latency_p50_ms': float(np.percentile(latencies, 50)) if latencies else None,
        'latency_p99_ms': float(np.percentile(latencies, 99)) if latencies else None,
        'frames_received': int(last.get('frames_received', 0)),
        'frames_dropped': int(last.get('frames_dropped', 0)),
        'frames_refused': int(last.get('frames_refused', 0)),
        'node_exit_code': node.returncode,
        'actions_started': sum(e['event'] == 'start' for e in events),
        'frames_kept': len(frames),
    }
    if rows:
        summary['segments'] = _segment_metrics(events, truth, rows)
    try:
        picture = _picture(clean or [(r, t) for r, t, _ in rows], frames, out_dir, checkpoint)
    except OSError as exc:
        summary['picture_error'] = str(exc)
    else:
        if picture:
            summary['picture'] = str(picture)
    executor.shutdown()
    listener.destroy_node()
    context.try_shutdown()
    return summary


def _event_text(event: dict) -> str:
    if event['event'] == 'start':
        return (f'>>> action {event["id"]} started: {event["class_name"]} (score '
                f'{event["score"]:.2f})')
    return (f'<<< action {event["id"]} ended: {event["class_name"]}, {event["duration_s"]:.1f} s, '
            f'mean score {event["mean_score"]:.2f}')


def _segment_metrics(events: list, truth: dict, rows: list) -> dict:
    """Score the actions against the true segments over the span the node saw.

    The span starts at the node's first window's first frame; an action still active at the end
    runs to the last window.
    """
    from .segments import from_events, runs, segment_metrics
    first = dict_ns(rows[0][0]['window']['start'])
    last = dict_ns(rows[-1][0]['window']['end'])
    predicted = from_events(events, open_until=last)
    true = runs(sorted((s, label) for s, label in truth.items() if first <= s <= last))
    return segment_metrics(predicted, true)


def _picture(rows, frames: dict, out_dir: Path, checkpoint: Optional[str]) -> Optional[Path]:
    """Re-run the window whose frames were all received through the engine, and draw it.

    It is re-run for its per-frame attention (the node publishes the last frame's map only).
    """
    from .checkpoints import embedded_checkpoint
    from .engine import Engine
    from .frames import decode
    engine = None
    for result, true in reversed(rows):
        start, end = dict_ns(result['window']['start']), dict_ns(result['window']['end'])
        stamps = sorted(s for s in frames if start <= s <= end)
        if len(stamps) < result['window']['num_frames']:
            continue
        engine = engine or Engine(checkpoint or str(embedded_checkpoint()), device='cpu')
        step = (len(stamps) - 1) / (engine.num_frames - 1)
        chosen = [stamps[round(i * step)] for i in range(engine.num_frames)]
        rgbs = [decode(frames[s])[0] for s in chosen]
        (prediction,) = engine.infer([[engine.preprocessor(f) for f in rgbs]])
        path = out_dir / 'window.png'
        draw_window(rgbs, prediction, path, f'truth {true}: {prediction.label} '
                                            f'{prediction.score:.2f}')
        return path
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog='timesformer_demo', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--duration', type=float, default=30.0)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--domain-id', type=int,
                        default=int(os.environ.get('ROS_DOMAIN_ID', '57') or 57))
    parser.add_argument('--out', type=Path, default=Path('demo_output'))
    parser.add_argument('--checkpoint', help='another checkpoint than the embedded model')
    args = parser.parse_args(argv)
    try:
        summary = run(args.duration, args.seed, args.domain_id, args.out, args.checkpoint)
    except (OSError, RuntimeError) as exc:
        print(f'timesformer_demo: error: {exc}', file=sys.stderr)
        return 1
    print()
    print(f'summary: {summary["windows"]} windows in {summary["duration_s"]:.0f} s, '
          f'accuracy {100 * summary["accuracy"]:.1f}% on {summary["clean_windows"]} clean '
          f'windows (chance {100 * (summary["chance"] or 0):.1f}%), latency p50 '
          f'{summary["latency_p50_ms"] or 0:.1f} ms p99 {summary["latency_p99_ms"] or 0:.1f} '
          f'ms, frames received {summary["frames_received"]}, dropped '
          f'{summary["frames_dropped"]}, refused {summary["frames_refused"]}')
    segments = summary.get('segments')
    if segments:
        print(f'actions: {segments["predicted_segments"]} segments for '
              f'{segments["true_segments"]} true ones, segmental F1@0.5 '
              f'{segments["f1@0.5"]:.2f}, edit score {segments["edit"]:.2f}, '
              f'{segments["false_segments"]} false, onset delay median '
              f'{segments["onset_delay_s"]["median"]} s')
    if 'picture' in summary:
        print(f'picture: {summary["picture"]}')
    if 'picture_error' in summary:
        print(f'timesformer_demo: warning: no picture: {summary["picture_error"]}',
              file=sys.stderr)
    try:
        (args.out / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    except OSError as exc:
        print(f'timesformer_demo: error: could not write the summary: {exc}', file=sys.stderr)
        return 1
    return 0 if summary['windows'] and summary['node_exit_code'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
