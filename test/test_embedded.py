"""The shipped motion model: accuracy on its own and on independent clips, through the real paths.

Quality is judged on clips that training could not shape: test/independent_clips.py, written
apart from synthetic.py and world.py, fed as a 30 Hz camera bag through `timesformer_bag
evaluate` with default parameters and as a camera to the node over DDS.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, console_script, fresh_domain
from independent_bags import independent_frames, write_independent_bag
from timesformer_ros import synthetic
from timesformer_ros.checkpoints import embedded_checkpoint, load_checkpoint
from timesformer_ros.frames import Normaliser
from timesformer_ros.messages import dict_ns as stamp_of
from timesformer_ros.messages import rclpy_types
from timesformer_ros.train import (
    EMBEDDED_CLIP_FPS, REPORT_SEED, clip_rates, predict, reversal_rate)

HELD_OUT_SEED = REPORT_SEED + 999   # never drawn by training or validation
# The node's limit to work through 1.5 s x 14 clips of frames: about 10 s on an idle machine,
# several times that on 2 loaded cores (five suites at once). A wait on a condition: a node that
# keeps up ends it sooner.
PROCESS_LIMIT_S = 180.0


@pytest.fixture(scope='module')
def shipped():
    return load_checkpoint(embedded_checkpoint())


@pytest.fixture(scope='module')
def held_out(shipped):
    """Held-out synthetic clips at the rates around the checkpoint's clip rate."""
    cfg = shipped.config
    return synthetic.make_dataset(HELD_OUT_SEED, 280, cfg.img_size, cfg.num_frames,
                                  synthetic.TRAIN_STYLE, fps=clip_rates(shipped.clip_fps))


def test_the_shipped_model_is_small_fast_and_installed_as_package_data(shipped):
    path = embedded_checkpoint()
    weights = path.with_suffix('.safetensors')
    assert path.is_file() and weights.is_file()
    assert weights.stat().st_size + path.stat().st_size <= 10 * 2 ** 20
    assert shipped.labels == list(synthetic.CLASSES)
    assert shipped.config.attention_type == 'divided_space_time'
    assert shipped.clip_fps == EMBEDDED_CLIP_FPS    # the node samples at it by default
    assert 'command' in shipped.extra['training']
    setup = (REPO / 'setup.py').read_text()
    assert "'data/*.json', 'data/*.safetensors'" in setup


def test_accuracy_on_held_out_synthetic_clips(shipped, held_out):
    """Score >= 95% on a small fixed held-out set of synthetic.py (its own generator).

    0.989 measured on these 280 clips; 0.987 on the report's 2100 (BENCHMARKS.md).
    """
    clips, labels = held_out
    normaliser = Normaliser(shipped.mean, shipped.std)
    assert (predict(shipped.model, clips, normaliser) == labels).mean() >= 0.95


def test_playing_clips_backwards_swaps_each_motion_with_its_reverse(shipped, held_out):
    """Swap each motion with its reverse when the clip plays backwards: order matters.

    Backwards, left<->right, up<->down, approaching<->receding swap (0.996 measured on these
    clips). A model blind to frame order would score at most 0.5, since it
    gives a clip and its reversal the same label.
    """
    clips, labels = held_out
    normaliser = Normaliser(shipped.mean, shipped.std)
    assert reversal_rate(shipped.model, clips, labels, normaliser) >= 0.95


# -- clips that training could not shape --------------------------------------------------------

INDEPENDENT_SEED = 4242      # the generator's seed here; benchmarks/motion_quality.py uses 7001
INDEPENDENT_CLIPS = 42


@pytest.fixture(scope='module')
def independent_bags(tmp_path_factory):
    """Write a 30 Hz camera bag of the independent clips, and one of them backwards."""
    root = tmp_path_factory.mktemp('independent')
    for name, reverse in (('forward', False), ('backwards', True)):
        write_independent_bag(root / name, INDEPENDENT_SEED, INDEPENDENT_CLIPS, reverse)
    return root


def evaluate_with_defaults(bag: Path):
    """Run `timesformer_bag evaluate` as a user would: no parameters file, the embedded model."""
    result = subprocess.run(
        console_script('timesformer_bag') + [
            'evaluate', str(bag), '--topic', '/camera/image_raw', '--truth', '/motion',
            '--out', str(bag) + '.jsonl'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = re.search(r'accuracy ([\d.]+)% on (\d+) ', result.stdout)
    assert found, result.stdout
    return float(found.group(1)) / 100, int(found.group(2)), result.stdout


def test_independent_clips_through_bag_evaluation_with_default_parameters(independent_bags):
    """Issue 11: >= 90% on the independent generator, fed as a 30 Hz bag with defaults.

    The node's windowing samples at the checkpoint's clip rate (7.5 fps: every fourth frame).
    0.967 of 336 windows measured on these 42 clips; benchmarks/motion_quality.py: 0.964 of
    2800 on 350 others.
    """
    accuracy, windows, output = evaluate_with_defaults(independent_bags / 'forward')
    assert "sampling 7.5 fps by header stamps (the checkpoint's clip rate)" in output
    assert windows >= INDEPENDENT_CLIPS * 7      # 2 s of 7.5 fps: 15 frames, 8 windows a clip
    assert accuracy >= 0.92, output


def test_independent_clips_played_backwards_swap_their_motion(independent_bags):
    """The same clips backwards: each motion becomes its reverse (static stays static).

    0.946 measured here (0.963 on benchmarks/motion_quality.py's 350 clips).
    """
    accuracy, _, output = evaluate_with_defaults(independent_bags / 'backwards')
    assert accuracy >= 0.92, output


def test_independent_clips_from_a_camera_over_dds(ros, start_node):
    """The same model in the node: a 30 Hz camera of independent clips, labels over DDS.

    Each window's top-1 on ~/window is scored against the clip its last frame belongs to
    (1.0 of 70 windows measured).
    """
    from sensor_msgs.msg import Image
    from test_node import Listener, caught_up, wait_for_subscriber
    types = rclpy_types()
    # Reliable, with room for a burst: over best effort Fast DDS loses a frame now and then
    # without reporting it as lost (2 of 630 in about half the runs on these machines), and
    # the wait below counts every frame.
    node = start_node('-p', 'qos:=reliable', '-p', 'qos_depth:=50')
    listener = Listener(ros)
    publisher = ros.node.create_publisher(Image, 'image', 10)
    wait_for_subscriber(ros, publisher)
    truth = {}
    sent = 0
    for stamp, rgb, label in independent_frames(INDEPENDENT_SEED + 1, 14, seconds=1.5):
        publisher.publish(types.image(types.header(stamp, 'camera'), rgb, 'rgb8'))
        truth[stamp] = label
        sent += 1
        ros.spin_for(1 / 60)        # twice the camera rate: the stamps say 30 Hz
    # Every frame received, no window waiting, and every processed window's result here. The
    # node works through the frames at its own pace: on a loaded 2-core machine that can take
    # many times the 10 s of sending, so the limit only stops a node that has stopped working.
    assert ros.spin_until(caught_up(listener, sent), PROCESS_LIMIT_S), listener.diagnostics[-1:]
    node.stop()
    scored = [(r['results'][0]['class_name'], truth[stamp_of(r['header']['stamp'])])
              for r in listener.windows]
    accuracy = np.mean([predicted == true for predicted, true in scored])
    assert len(scored) >= 14 * 5, len(scored)
    assert accuracy >= 0.88, (accuracy, len(scored))


@pytest.mark.parametrize('damage', ['missing', 'truncated'])
def test_a_broken_model_file_stops_the_node_naming_the_file(ros, tmp_path, damage):
    source = embedded_checkpoint()
    meta = tmp_path / source.name
    meta.write_text(source.read_text())
    weights = meta.with_suffix('.safetensors')
    if damage == 'truncated':
        weights.write_bytes(source.with_suffix('.safetensors').read_bytes()[:4096])
    result = subprocess.run(console_script('timesformer_node') + [
        '--ros-args', '-p', f'checkpoint:={meta}'], env=ros.env, capture_output=True,
        text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert str(weights) in output and 'Traceback' not in output


def test_demo_short_run_scores_well_above_chance(tmp_path):
    """`make demo` in a short mode: node and camera as processes over DDS, scored live."""
    result = subprocess.run(
        [sys.executable, '-m', 'timesformer_ros.demo', '--duration', '20', '--out',
         str(tmp_path), '--domain-id', str(fresh_domain())],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['clean_windows'] >= 20, summary
    assert summary['accuracy'] >= 0.65, summary      # 0.75 (77 clean windows) on 2026-12-05
    assert summary['chance'] == pytest.approx(1 / 7)  # from ~/label_info: 7 classes
    # Bounded memory: only the newest frames are kept for the picture, not all 360.
    assert summary['frames_kept'] <= 120 < summary['frames_received'], summary
    assert summary['node_exit_code'] == 0
    assert Path(summary['picture']).stat().st_size > 0
    assert 'summary:' in result.stdout
    # Actions: the camera changes motion every 1-3 s, so 20 s hold about 11 segments. At 12 s
    # (about 6) one extra segment moved F1 by 0.1: 0.57 in one of two fresh-clone runs on an
    # idle machine; 20 s gave 0.78 and 0.82 (`python -m timesformer_ros.demo --duration 20`).
    segments = summary['segments']
    assert segments['true_segments'] >= 3 and segments['f1@0.1'] >= 0.6, segments
    assert 'action 0 started' in result.stdout and 'actions:' in result.stdout


def test_demo_output_failures_are_one_line(tmp_path):
    """An --out that cannot be a directory: one line, exit 1, before anything starts."""
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    result = subprocess.run(
        [sys.executable, '-m', 'timesformer_ros.demo', '--duration', '1', '--out',
         str(blocker / 'out')], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('timesformer_demo: error:'), result.stderr
    assert 'Traceback' not in result.stderr
