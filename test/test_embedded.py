"""The shipped motion model: accuracy, order sensitivity, packaging, and a broken file."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, console_script
from timesformer_ros import synthetic
from timesformer_ros.checkpoints import load_checkpoint
from timesformer_ros.frames import Normaliser
from timesformer_ros.checkpoints import embedded_checkpoint
from timesformer_ros.train import REPORT_SEED, predict, reversal_rate

HELD_OUT_SEED = REPORT_SEED + 999   # never drawn by training or validation


@pytest.fixture(scope='module')
def shipped():
    return load_checkpoint(embedded_checkpoint())


@pytest.fixture(scope='module')
def held_out(shipped):
    cfg = shipped.config
    return synthetic.make_dataset(HELD_OUT_SEED, 280, cfg.img_size, cfg.num_frames,
                                  synthetic.TRAIN_STYLE)


def test_the_shipped_model_is_small_and_installed_as_package_data(shipped):
    path = embedded_checkpoint()
    weights = path.with_suffix('.safetensors')
    assert path.is_file() and weights.is_file()
    assert weights.stat().st_size + path.stat().st_size <= 10 * 2 ** 20
    assert shipped.labels == list(synthetic.CLASSES)
    assert shipped.config.attention_type == 'divided_space_time'
    assert 'command' in shipped.extra['training']
    setup = (REPO / 'setup.py').read_text()
    assert "'data/*.json', 'data/*.safetensors'" in setup


def test_accuracy_on_held_out_clips(shipped, held_out):
    """Score >= 90% on a small fixed held-out set (issue 5's CI check).

    0.971 measured on these 280 clips; 0.974 on the README's 2100.
    """
    clips, labels = held_out
    normaliser = Normaliser(shipped.mean, shipped.std)
    assert (predict(shipped.model, clips, normaliser) == labels).mean() >= 0.90


def test_playing_clips_backwards_swaps_each_motion_with_its_reverse(shipped, held_out):
    """Swap each motion with its reverse when the clip plays backwards: order matters.

    Backwards, left<->right, up<->down, approaching<->receding swap (0.979 measured on these
    clips). A model blind to frame order would score at most 0.5, since it gives a clip and
    its reversal the same label.
    """
    clips, labels = held_out
    normaliser = Normaliser(shipped.mean, shipped.std)
    assert reversal_rate(shipped.model, clips, labels, normaliser) >= 0.90


@pytest.mark.parametrize('style', ['background', 'noise'])
def test_accuracy_holds_on_a_scene_style_training_never_saw(shipped, style):
    """Hold accuracy on clutter backgrounds and noise 0.06-0.08, both held out of training.

    0.957 and 0.921 measured on these 140 clips.
    """
    cfg = shipped.config
    clips, labels = synthetic.make_dataset(
        HELD_OUT_SEED, 140, cfg.img_size, cfg.num_frames,
        {'background': synthetic.HELD_OUT_BACKGROUND, 'noise': synthetic.HELD_OUT_NOISE}[style])
    normaliser = Normaliser(shipped.mean, shipped.std)
    assert (predict(shipped.model, clips, normaliser) == labels).mean() >= 0.85


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
    import sys
    result = subprocess.run(
        [sys.executable, '-m', 'timesformer_ros.demo', '--duration', '12', '--out',
         str(tmp_path), '--domain-id', str(40 + (hash(str(tmp_path)) % 40))],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['clean_windows'] >= 20, summary
    assert summary['accuracy'] >= 0.8, summary       # 0.953 measured over 30 s
    assert summary['chance'] == pytest.approx(1 / 7)  # from ~/label_info: 7 classes
    # Bounded memory: only the newest frames are kept for the picture, not all 360.
    assert summary['frames_kept'] <= 120 < summary['frames_received'], summary
    assert summary['node_exit_code'] == 0
    assert Path(summary['picture']).stat().st_size > 0
    assert 'summary:' in result.stdout
    # Actions: the camera changes motion every 1-3 s, so 12 s hold several segments.
    segments = summary['segments']
    assert segments['true_segments'] >= 3 and segments['f1@0.1'] >= 0.6, segments
    assert 'action 0 started' in result.stdout and 'actions:' in result.stdout


def test_demo_output_failures_are_one_line(tmp_path):
    """An --out that cannot be a directory: one line, exit 1, before anything starts."""
    import sys
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    result = subprocess.run(
        [sys.executable, '-m', 'timesformer_ros.demo', '--duration', '1', '--out',
         str(blocker / 'out')], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('timesformer_demo: error:'), result.stderr
    assert 'Traceback' not in result.stderr
