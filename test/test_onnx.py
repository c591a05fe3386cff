"""ONNX export and the ONNX Runtime engine: exact to PyTorch, the same results, hostile files.

Every file here is written by `timesformer_export` (or edited from one); each runs on ONNX
Runtime's CPU provider and is compared with the PyTorch engine on the same weights.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, console_script, hiding_env, randomise_
from timesformer_ros.checkpoints import (
    CheckpointError, embedded_checkpoint, load_checkpoint, save_checkpoint)
from timesformer_ros.digests import checkpoint_files, digest_of
from timesformer_ros.engine import Engine, forward_with_summaries
from timesformer_ros.model import ATTENTION_TYPES, TimeSformer, preset

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from timesformer_ros import onnx_engine  # noqa: E402 - after the skips
from timesformer_ros.export import export_onnx, main as export_main  # noqa: E402
from timesformer_ros.onnx_engine import OnnxEngine, check_onnx  # noqa: E402

TOL = 1e-4
LABELS = ['left', 'right', 'still']


def tiny(kind: str) -> TimeSformer:
    torch.manual_seed(1)
    config = preset('tiny', attention_type=kind, num_frames=4, num_classes=3, depth=2,
                    embed_dim=32)
    return randomise_(TimeSformer(config)).eval()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """{attention type or 'embedded': (checkpoint path, .onnx path)}, each exported once."""
    root = tmp_path_factory.mktemp('onnx')
    out = {}
    for kind in ATTENTION_TYPES:
        ckpt = save_checkpoint(root / kind, tiny(kind), LABELS, mean=(0.4, 0.5, 0.6),
                               std=(0.2, 0.25, 0.3), source=f'test {kind}', clip_fps=12.5)
        out[kind] = (ckpt, export_onnx(load_checkpoint(ckpt), root / f'{kind}.onnx'))
    embedded = embedded_checkpoint()
    out['embedded'] = (embedded, export_onnx(load_checkpoint(embedded), root / 'embedded.onnx'))
    return out


@pytest.mark.parametrize('name', [*ATTENTION_TYPES, 'embedded'])
def test_outputs_and_predictions_equal_pytorch_at_batch_1_and_3(exported, name):
    """Logits and attention summaries within 1e-4 (float32); the same Predictions."""
    path, onnx_path = exported[name]
    torch_engine = Engine(load_checkpoint(path), device='cpu', dtype='float32', warmup=False)
    engine = OnnxEngine(onnx_path, providers=['cpu'], max_batch=3)
    cfg = torch_engine.config
    for batch in (1, 3):
        video = torch.randn(batch, cfg.num_frames, 3, cfg.img_size, cfg.img_size)
        with torch.inference_mode():
            expected = forward_with_summaries(torch_engine.model, video)
        got = engine.session.run(['logits', 'spatial', 'temporal'], {'video': video.numpy()})
        for name_, want, have in zip(('logits', 'spatial', 'temporal'), expected, got):
            assert have.shape == tuple(want.shape), name_
            assert np.abs(have - want.numpy()).max() < TOL, name_
        for want, have in zip(torch_engine.infer_tensor(video), engine.infer_tensor(video)):
            assert have.class_ids == want.class_ids and have.labels == want.labels
            np.testing.assert_allclose(have.probabilities, want.probabilities, atol=TOL)
            np.testing.assert_allclose(have.spatial, want.spatial, atol=TOL)
            np.testing.assert_allclose(have.spatial_last, want.spatial[-1], atol=TOL)
            np.testing.assert_allclose(have.temporal, want.temporal, atol=TOL)
            # The same region from the same last-block map: within one input pixel (a map
            # equal within TOL may move a threshold's edge by a pixel).
            assert have.box_method == want.box_method == 'motion'
            np.testing.assert_allclose(have.box, want.box, atol=1.0 / cfg.img_size)
    logits_only = engine.infer_tensor(video, with_attention=False)
    assert logits_only[0].spatial is None and logits_only[0].class_ids == \
        engine.infer_tensor(video)[0].class_ids


def test_the_symmetries_travel_so_the_file_scores_the_same_test_time_views(exported):
    """The embedded model's copies: 4 clips by default, as the PyTorch engine.

    The test above compares their probabilities; a file without symmetries, or with views
    none, runs the window alone.
    """
    path, onnx_path = exported['embedded']
    assert check_onnx(onnx_path).symmetries == load_checkpoint(path).extra['symmetries']
    engine = OnnxEngine(onnx_path, providers=['cpu'], warmup=False, max_batch=3)
    assert len(engine.views) == 3 and engine.describe().endswith(', 4 test-time views')
    # All 7 copies of one window in chunks of 2 (the last one short): the PyTorch engine's.
    chunked = OnnxEngine(onnx_path, providers=['cpu'], warmup=False, views='all', max_batch=2)
    torch_engine = Engine(load_checkpoint(path), device='cpu', dtype='float32', warmup=False,
                          views='all')
    cfg = torch_engine.config
    video = torch.randn(1, cfg.num_frames, 3, cfg.img_size, cfg.img_size)
    np.testing.assert_allclose(chunked.infer_tensor(video)[0].probabilities,
                               torch_engine.infer_tensor(video)[0].probabilities, atol=TOL)
    assert OnnxEngine(onnx_path, providers=['cpu'], warmup=False, views='none').views == []
    assert OnnxEngine(exported['divided_space_time'][1], providers=['cpu'],
                      warmup=False).views == []


def test_the_file_is_a_checkpoint_on_its_own(exported):
    """Labels, mean/std, clip rate, config, source and its hash travel in the metadata."""
    ckpt_path, path = exported['divided_space_time']
    ckpt = load_checkpoint(ckpt_path)
    described = check_onnx(path)
    assert described.config == ckpt.config
    assert described.labels == LABELS
    assert described.mean == (0.4, 0.5, 0.6) and described.std == (0.2, 0.25, 0.3)
    assert described.clip_fps == 12.5 and described.source == 'test divided_space_time'
    assert described.source_sha256 == digest_of(checkpoint_files(ckpt_path))
    engine = OnnxEngine(path, providers=['cpu'], warmup=False)
    assert engine.num_frames == 4 and engine.clip_fps == 12.5 and engine.labels == LABELS
    assert engine.preprocessor.normaliser is not None
    assert 'onnxruntime cpu in float32' in engine.describe()


def test_layer_norms_are_one_layernormalization_each_at_opset_17_or_later(exported):
    model = onnx.load(str(exported['divided_space_time'][1]))
    assert {o.domain: o.version for o in model.opset_import}[''] >= 17
    ops = [node.op_type for node in model.graph.node]
    # divided blocks: temporal_norm1, norm1, norm2; then the final norm
    assert ops.count('LayerNormalization') == 2 * 3 + 1
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField('dim_value')     # a dynamic batch


def test_export_command_writes_verifies_and_refuses_in_one_line(tmp_path, exported, capsys):
    ckpt_path = exported['joint_space_time'][0]
    out = tmp_path / 'joint.onnx'
    assert export_main([str(ckpt_path), '--out', str(out), '--clip-fps', '5']) == 0
    line = capsys.readouterr().out
    assert line.startswith(f'wrote {out}') and 'largest difference' in line
    assert check_onnx(out).clip_fps == 5.0
    for argv, message in ((['--out', str(tmp_path / 'x.pt')], 'must end in .onnx'),
                          ([str(tmp_path / 'nothing.json'), '--out', str(out)],
                           'checkpoint not found'),
                          ([str(ckpt_path), '--out', str(out), '--clip-fps', '-1'],
                           'clip_fps must be')):
        assert export_main(argv) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and err.startswith('timesformer_export: error: ')
        assert message in err


# -- the same results through evaluate and through the node --------------------------------------

CONFIG = REPO / 'config' / 'timesformer.yaml'
START_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    from timesformer_ros.bags import record_synthetic
    path = tmp_path_factory.mktemp('bag') / 'synthetic'
    record_synthetic(path, 'mcap', seconds=4.0, fps=30.0, seed=5, width=160, height=120,
                     start_ns=START_NS)
    return path


def windows(path: Path) -> dict:
    return {(r['window']['start']['sec'], r['window']['start']['nanosec'],
             r['header']['stamp']['sec'], r['header']['stamp']['nanosec']): r['results']
            for r in map(json.loads, path.read_text().splitlines())}


def assert_same_results(expected: dict, got: dict):
    """Assert the same windows, the same top-1, every reported score within 1e-3."""
    assert expected and sorted(got) == sorted(expected)
    for key, results in expected.items():
        assert got[key][0]['class_name'] == results[0]['class_name'], key
        want = {r['class_name']: r['score'] for r in results}
        have = {r['class_name']: r['score'] for r in got[key]}
        assert max(abs(want[c] - have.get(c, 0.0)) for c in want) < 1e-3, key


def test_evaluate_gives_the_same_windows_top1_and_scores(exported, bag, tmp_path):
    from timesformer_ros.bags.cli import main as bag_main
    outs = {}
    for name, checkpoint in (('torch', str(exported['embedded'][0])),
                             ('onnx', str(exported['embedded'][1]))):
        outs[name] = tmp_path / f'{name}.jsonl'
        assert bag_main(['evaluate', str(bag), '--topic', '/camera/image_raw', '--checkpoint',
                         checkpoint, '--params-file', str(CONFIG), '--device', 'cpu',
                         '--out', str(outs[name])]) == 0
    assert_same_results(windows(outs['torch']), windows(outs['onnx']))


def test_the_node_over_dds_gives_the_offline_pytorch_results(exported, bag, ros, tmp_path):
    """Replayed into the node running the .onnx file: the PyTorch engine's windows and scores."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from timesformer_ros.bags import Evaluation, EvaluationOutputs, evaluate
    offline = tmp_path / 'offline.jsonl'
    evaluate(Evaluation(bag, '/camera/image_raw', params_file=CONFIG, device='cpu',
                        progress=False), EvaluationOutputs(jsonl=offline))
    results = []
    ros.node.create_subscription(String, '/timesformer/window',
                                 lambda m: results.append(json.loads(m.data)),
                                 QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
    node = subprocess.Popen(console_script('timesformer_node') + [
        '--ros-args', '--params-file', str(CONFIG), '-p', 'qos:=reliable',
        '-p', f'checkpoint:={exported["embedded"][1]}', '-p', 'providers:=[cuda, cpu]',
        '-r', 'image:=/camera/image_raw'],
        env=ros.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert ros.spin_until(lambda: ros.node.count_publishers('/timesformer/window') > 0 or
                              node.poll() is not None, 60.0), 'the node did not come up'
        assert node.poll() is None, node.stdout.read()
        player = subprocess.Popen(
            [*console_script('timesformer_bag'), 'play', str(bag), '--topic',
             '/camera/image_raw', '--rate', '0.5', '--reliable'],
            env=ros.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert ros.spin_until(lambda: player.poll() is not None, 60.0), 'play did not finish'
        assert player.returncode == 0, player.stdout.read()
        expected = windows(offline)
        ros.spin_until(lambda: len(results) >= len(expected), 10.0)
    finally:
        node.send_signal(2)
        code, output = node.wait(timeout=10), node.stdout.read()
    assert code == 0, output
    assert "providers ['CPUExecutionProvider']" in output      # cuda: not in this build
    assert 'onnxruntime cpu in float32' in output
    online = tmp_path / 'online.jsonl'
    online.write_text(''.join(json.dumps(r) + '\n' for r in results))
    assert_same_results(expected, windows(online))


# -- without onnxruntime -------------------------------------------------------------------------

def test_without_onnxruntime_an_onnx_checkpoint_is_one_line_and_exit_2(exported, bag, tmp_path):
    """The tools run without onnx/onnxruntime; only an .onnx file needs them."""
    env = hiding_env(tmp_path / 'hide', ['onnxruntime', 'onnx', 'onnxscript'])
    path = exported['embedded'][1]
    result = subprocess.run(
        [*console_script('timesformer_bag'), 'evaluate', str(bag), '--topic',
         '/camera/image_raw', '--checkpoint', str(path), '--device', 'cpu'],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and 'needs onnxruntime' in lines[0]
    assert 'pip install -r requirements/onnx.txt' in lines[0]
    # The rest works as before: the PyTorch checkpoint in the same environment.
    result = subprocess.run(
        [sys.executable, '-c', 'import timesformer_ros.node, timesformer_ros.bags, '
         'timesformer_ros.engine, timesformer_ros.onnx_engine; import sys; '
         "print('onnxruntime' in sys.modules)"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == 'False', result.stderr


# -- hostile files -------------------------------------------------------------------------------

def load(path: Path):
    return onnx.load(str(path))


def save(model, path: Path):
    onnx.save(model, str(path))


def set_meta(**changes):
    def edit(model, directory):
        for prop in model.metadata_props:
            if prop.key == 'timesformer_ros':
                meta = json.loads(prop.value)
                meta.update(changes)
                prop.value = json.dumps(meta)
        return model
    return edit


def set_config(**changes):
    def edit(model, directory):
        for prop in model.metadata_props:
            if prop.key == 'timesformer_ros':
                meta = json.loads(prop.value)
                meta['config'].update(changes)
                prop.value = json.dumps(meta)
        return model
    return edit


def set_meta_text(text):
    def edit(model, directory):
        for prop in model.metadata_props:
            if prop.key == 'timesformer_ros':
                prop.value = text
        return model
    return edit


def drop_meta(model, directory):
    del model.metadata_props[:]
    return model


def opset(version):
    def edit(model, directory):
        for entry in model.opset_import:
            if entry.domain == '':
                entry.version = version
        return model
    return edit


def rename_input(model, directory):
    model.graph.input[0].name = 'frames'
    return model


def input_rank_4(model, directory):
    del model.graph.input[0].type.tensor_type.shape.dim[1]
    return model


def input_frames_16(model, directory):
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 16
    return model


def drop_output(model, directory):
    keep = [o for o in model.graph.output if o.name != 'spatial']
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model


def logits_int64(model, directory):
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    return model


def external(location, offset=0, make=None):
    """Move the largest initializer into external data at `location` (made by `make`)."""
    def edit(model, directory):
        tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        data = tensor.raw_data
        if make is not None:
            make(directory, data)
        tensor.ClearField('raw_data')
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (('location', location), ('offset', str(offset)),
                           ('length', str(len(data)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return model
    return edit


def beside(name):
    def make(directory, data):
        (directory / name).write_bytes(data)
    return make


def outside_via_link(directory, data):
    target = directory.parent / 'outside.bin'
    target.write_bytes(data)
    (directory / 'link.bin').symlink_to(target)


def deep_json():
    return '{"a": ' * 100000 + '1' + '}' * 100000


BYTES = {
    'garbage': (b'\x08\x07 this is not an onnx file at all \xff' * 50,
                'not a readable ONNX file'),
    'empty': (b'', "no 'timesformer_ros' metadata"),
}
EDITS = {
    'no_metadata': (drop_meta, "no 'timesformer_ros' metadata"),
    'metadata_not_json': (set_meta_text('{labels: left'), 'metadata is not readable JSON'),
    'metadata_nested_deeply': (set_meta_text(deep_json()), 'nested too deeply'),
    'metadata_other_format': (set_meta(format='something'),
                              'is not a timesformer_ros-onnx description'),
    'metadata_future_version': (set_meta(version=2), 'version 2 is not readable here'),
    'no_config': (set_meta(config=None), 'config must be a JSON object'),
    'config_unknown_field': (set_config(hidden=1), 'unknown config fields'),
    'config_huge': (set_config(embed_dim=10 ** 6), 'embed_dim 1000000 is above the limit'),
    'config_string_frames': (set_config(num_frames='4'), 'num_frames must be an integer'),
    'labels_repeated': (set_meta(labels=['a', 'a', 'b']), 'labels must be distinct'),
    'labels_too_few': (set_meta(labels=['a', 'b']), 'has 2 labels but the model head has 3'),
    'labels_not_strings': (set_meta(labels=[1, 2, 3]), 'label 0 must be a string'),
    'mean_nan': (set_meta(mean=[float('nan')] * 3), r'mean .* is not finite'),
    'std_zero': (set_meta(std=[0.0] * 3), 'std .* must lie between'),
    'mean_255': (set_meta(mean=[123.7] * 3), r'mean .* is outside'),
    'clip_fps_negative': (set_meta(clip_fps=-5), 'clip_fps must be a rate'),
    'source_number': (set_meta(source=7), 'source must be a string'),
    'sha_missing': (set_meta(source_sha256=''), 'source_sha256 must be 64 hexadecimal'),
    'opset_16': (opset(16), 'opset 16 is below 17'),
    'input_renamed': (rename_input, "must take one input 'video'"),
    'input_rank_4': (input_rank_4, 'video must have rank 5'),
    'input_16_frames': (input_frames_16, 'size 16 on axis 1 where the metadata says 4'),
    'output_missing': (drop_output, r"lacks the outputs \['spatial'\]"),
    'logits_int64': (logits_int64, 'logits must be float32'),
    'external_absolute': (external('/etc/hostname'), 'relative path inside its directory'),
    'external_dotdot': (external('../weights.bin', make=lambda d, data: (
        d.parent / 'weights.bin').write_bytes(data)), 'without ".."'),
    'external_missing': (external('weights.bin'), "external data 'weights.bin' cannot be read"),
    'external_link_outside': (external('link.bin', make=outside_via_link),
                              'leads outside its directory'),
    'external_beyond_end': (external('weights.bin', offset=10 ** 6, make=beside('weights.bin')),
                            'lies beyond the end of weights.bin'),
    'external_directory': (external('sub', make=lambda d, data: (d / 'sub').mkdir()),
                           "external data 'sub' is not a regular file"),
}


@pytest.fixture(scope='module')
def valid(exported):
    """Return a valid exported file to attack: the tiny divided model (3 classes, 4 frames)."""
    return exported['divided_space_time'][1]


def build(name: str, valid: Path, directory: Path) -> Path:
    directory.mkdir()
    path = directory / 'model.onnx'
    if name in BYTES:
        path.write_bytes(BYTES[name][0])
    else:
        save(EDITS[name][0](load(valid), directory), path)
    return path


@pytest.mark.parametrize('name', sorted({**BYTES, **EDITS}))
def test_a_hostile_onnx_file_is_refused_in_one_line_and_exit_2(name, valid, bag, tmp_path, capsys):
    """Refused by `check_onnx` before any runtime sees it; `evaluate` exits 2 with one line."""
    from timesformer_ros.bags.cli import main as bag_main
    path = build(name, valid, tmp_path / 'files')
    expected = {**BYTES, **EDITS}[name][1]
    with pytest.raises(CheckpointError) as info:
        check_onnx(path)
    message = str(info.value)
    assert '\n' not in message and len(message) < 2000, message
    assert str(path) in message and re.search(expected, message), message
    assert bag_main(['evaluate', str(bag), '--topic', '/camera/image_raw', '--checkpoint',
                     str(path), '--device', 'cpu']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('timesformer_bag: error: '), err
    assert re.search(expected, err), err


def test_external_data_beside_the_file_loads_and_runs_as_the_inline_file(valid, tmp_path):
    """The attack-free version of the external data cases: the same outputs."""
    path = tmp_path / 'model.onnx'
    save(external('weights.bin', make=beside('weights.bin'))(load(valid), tmp_path), path)
    described = check_onnx(path)
    assert described.files == (path, tmp_path / 'weights.bin')
    video = torch.randn(2, 4, 3, 32, 32)
    inline = OnnxEngine(valid, providers=['cpu'], warmup=False).infer_tensor(video)
    split = OnnxEngine(path, providers=['cpu'], warmup=False).infer_tensor(video)
    for a, b in zip(inline, split):
        np.testing.assert_array_equal(a.probabilities, b.probabilities)


def test_size_limits_and_odd_paths_are_refused_before_parsing(valid, tmp_path, monkeypatch):
    (tmp_path / 'dir.onnx').mkdir()
    for path, message in ((tmp_path / 'missing.onnx', 'checkpoint not found'),
                          (tmp_path / 'dir.onnx', 'not a regular file')):
        with pytest.raises(CheckpointError, match=message):
            check_onnx(path)
    monkeypatch.setattr(onnx_engine, 'MAX_ONNX_BYTES', 1000)
    with pytest.raises(CheckpointError, match='more than an ONNX protobuf can hold'):
        check_onnx(valid)


def test_the_node_refuses_a_hostile_file_in_one_line_with_exit_2(valid, ros, tmp_path):
    path = build('external_dotdot', valid, tmp_path / 'files')
    result = subprocess.run(console_script('timesformer_node') + [
        '--ros-args', '-p', f'checkpoint:={path}'], env=ros.env, capture_output=True,
        text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in (result.stdout + result.stderr).splitlines()
              if 'without ".."' in line]
    assert len(errors) == 1 and str(path) in errors[0], result.stdout + result.stderr


@pytest.mark.parametrize('providers, message', [
    (['tpu'], "unknown execution providers \\['tpu'\\]"),
    (['tensorrt'], r"providers \['tensorrt'\]: none is available"),
])
def test_providers_that_cannot_run_are_one_line_errors(valid, providers, message):
    from timesformer_ros.engine import EngineError
    with pytest.raises(EngineError, match=message):
        OnnxEngine(valid, providers=providers)


def test_the_tensorrt_cache_is_keyed_on_the_file_tensorrt_and_precision(valid, tmp_path):
    described = check_onnx(valid)
    first = onnx_engine.trt_cache_directory(str(tmp_path), described, False, 8)
    assert first.parent == tmp_path and described.sha256()[:24] in first.name
    assert onnx_engine.trt_cache_directory(str(tmp_path), described, True, 8) != first
    changed = tmp_path / 'changed.onnx'
    model = load(valid)
    model.doc_string = 'retrained'
    save(model, changed)
    assert onnx_engine.trt_cache_directory(str(tmp_path), check_onnx(changed), False, 8) != first


def test_an_unwritable_tensorrt_cache_is_one_line(valid, tmp_path):
    from timesformer_ros.engine import EngineError
    engine = OnnxEngine(valid, providers=['cpu'], warmup=False)
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(EngineError, match='trt_cache_dir: cannot create .*file/'):
        engine._provider_options('TensorrtExecutionProvider', str(blocker))
