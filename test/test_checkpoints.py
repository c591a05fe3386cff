"""Checkpoints in every format give the reference network's logits; bad files fail clearly."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import console_script, hf_reference_logits, randomise_
from timesformer_ros.checkpoints import (
    CheckpointError, OFFICIAL_MEAN, OFFICIAL_STD, detect_format, load_checkpoint, load_model,
    load_vit_weights_into_timesformer, save_checkpoint)
from timesformer_ros.model import ATTENTION_TYPES, TimeSformer, TimeSformerConfig

VIDEO_SHAPE = (2, 4, 3, 32, 32)


def official_to_hf_name(name: str) -> str:
    """Map an official parameter name to transformers'.

    Restated from the sequential string rules of transformers'
    models/timesformer/convert_timesformer_to_pytorch.py (rename_key and convert_state_dict),
    independently of the package's table so that the test checks it.
    """
    if 'qkv' in name:
        layer = name.split('.')[1]
        part = 'temporal_attention' if 'temporal' in name else 'attention'
        return f'timesformer.encoder.layer.{layer}.{part}.attention.qkv.{name.split(".")[-1]}'
    rules = [
        ('cls_token', 'timesformer.embeddings.cls_token'),
        ('pos_embed', 'timesformer.embeddings.position_embeddings'),
        ('time_embed', 'timesformer.embeddings.time_embeddings'),
        ('patch_embed.proj', 'timesformer.embeddings.patch_embeddings.projection'),
        ('blocks', 'timesformer.encoder.layer'),
        ('attn.proj', 'attention.output.dense'),
        ('temporal_norm1', 'temporal_layernorm'),
        ('temporal_fc', 'temporal_dense'),
        ('norm1', 'layernorm_before'),
        ('norm2', 'layernorm_after'),
        ('mlp.fc1', 'intermediate.dense'),
        ('mlp.fc2', 'output.dense'),
        ('head', 'classifier'),
    ]
    for old, new in rules:
        name = name.replace(old, new)
    if name in ('norm.weight', 'norm.bias'):
        name = 'timesformer.layer' + name
    return name


# The parameter names of one divided block in the official vit.py (Block.__init__): norm1,
# attn (qkv, proj), temporal_norm1, temporal_attn (qkv, proj), temporal_fc, norm2, mlp.
OFFICIAL_BLOCK_PARAMS = {
    f'blocks.0.{m}.{p}' for m in ('norm1', 'attn.qkv', 'attn.proj', 'temporal_norm1',
                                  'temporal_attn.qkv', 'temporal_attn.proj', 'temporal_fc',
                                  'norm2', 'mlp.fc1', 'mlp.fc2')
    for p in ('weight', 'bias')}
OFFICIAL_TOP_PARAMS = {'cls_token', 'pos_embed', 'time_embed', 'patch_embed.proj.weight',
                       'patch_embed.proj.bias', 'norm.weight', 'norm.bias', 'head.weight',
                       'head.bias'}


def official_state_from_hf(hf_model, prefix='model.') -> dict:
    hf_state = hf_model.state_dict()
    config = TimeSformerConfig(
        img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=4,
        mlp_ratio=2.0, num_classes=hf_model.config.num_labels,
        attention_type=hf_model.config.attention_type)
    with torch.device('meta'):
        names = TimeSformer(config).state_dict().keys()
    return {prefix + name: hf_state[official_to_hf_name(name)].clone() for name in names}


def test_parameter_names_are_the_official_ones():
    names = set(TimeSformer(TimeSformerConfig(img_size=32, patch_size=8, embed_dim=32, depth=1,
                                              num_heads=4)).state_dict())
    assert names == OFFICIAL_BLOCK_PARAMS | OFFICIAL_TOP_PARAMS


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
@pytest.mark.parametrize('weights_file', ['model.safetensors', 'pytorch_model.bin'])
def test_huggingface_directory_gives_reference_logits(tmp_path, make_hf_model, attention_type,
                                                      weights_file):
    hf_model = make_hf_model(attention_type)
    hf_model.save_pretrained(tmp_path)
    if weights_file == 'pytorch_model.bin':
        # transformers 5 writes safetensors only; directories from transformers 4 hold a
        # torch-saved state dict instead, which is what this writes.
        torch.save(hf_model.state_dict(), tmp_path / weights_file)
        (tmp_path / 'model.safetensors').unlink()
    assert detect_format(tmp_path) == 'huggingface'
    ckpt = load_checkpoint(tmp_path)
    video = torch.randn(*VIDEO_SHAPE)
    with torch.no_grad():
        ours = ckpt.model(video)
    reference = hf_reference_logits(hf_model, video)
    assert ours.shape == reference.shape == (2, 5)
    assert (ours - reference).abs().max() <= 1e-4
    assert ckpt.labels == [f'action_{i}' for i in range(5)]
    assert ckpt.config.attention_type == attention_type


def test_huggingface_preprocessor_normalisation_is_read(tmp_path, make_hf_model):
    make_hf_model().save_pretrained(tmp_path)
    (tmp_path / 'preprocessor_config.json').write_text(
        json.dumps({'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.5, 0.5, 0.5]}))
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.mean == (0.5, 0.5, 0.5) and ckpt.std == (0.5, 0.5, 0.5)


def hf_resized_reference(hf_model, make_hf_model, frames: int, size: int):
    """Build the official network for a clip of `frames` frames at `size` px.

    It is a transformers model configured for that input, holding `hf_model`'s weights with
    the position and time embeddings resized by nearest-neighbour interpolation as the
    official vit.py does at inference. (transformers' own model cannot serve as the reference
    here: its layers read T from the config, not from the input.)
    """
    state = dict(hf_model.state_dict())
    config = hf_model.config
    grid, new_grid = config.image_size // config.patch_size, size // config.patch_size
    key = 'timesformer.embeddings.position_embeddings'
    pos = state[key]
    patches = pos[0, 1:].T.reshape(1, -1, grid, grid)
    patches = F.interpolate(patches, size=(new_grid, new_grid), mode='nearest')
    state[key] = torch.cat([pos[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)
    key = 'timesformer.embeddings.time_embeddings'
    if key in state:
        state[key] = F.interpolate(state[key].transpose(1, 2), size=frames,
                                   mode='nearest').transpose(1, 2)
    reference = make_hf_model(config.attention_type, num_frames=frames, image_size=size)
    reference.load_state_dict(state)
    return reference.eval()


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
def test_embeddings_resized_at_runtime_as_the_official_code_does(tmp_path, make_hf_model,
                                                                 attention_type):
    hf_model = make_hf_model(attention_type)
    hf_model.save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path).model
    video = torch.randn(1, 8, 3, 48, 48)
    reference = hf_resized_reference(hf_model, make_hf_model, frames=8, size=48)
    with torch.no_grad():
        assert (model(video) - hf_reference_logits(reference, video)).abs().max() <= 1e-4


@pytest.mark.parametrize('attention_type', ATTENTION_TYPES)
@pytest.mark.parametrize('wrapper, prefix', [
    ('model_state', 'model.'),          # facebookresearch/TimeSformer .pyth checkpoints
    ('model_state', 'module.model.'),   # the same saved from DistributedDataParallel
    ('model', 'module.'),
    (None, ''),                         # a bare state dict
])
def test_official_checkpoint_gives_reference_logits(tmp_path, make_hf_model, attention_type,
                                                    wrapper, prefix):
    hf_model = make_hf_model(attention_type)
    state = official_state_from_hf(hf_model, prefix)
    payload = {wrapper: state, 'epoch': 15, 'cfg': 'MODEL:\n  NUM_CLASSES: 5\n'} if wrapper \
        else state
    path = tmp_path / 'TimeSformer_divST_8x32_224_K400.pyth'
    torch.save(payload, path)
    assert detect_format(path) == 'official'
    ckpt = load_checkpoint(path, num_heads=4)
    assert ckpt.config.attention_type == attention_type
    assert (ckpt.mean, ckpt.std) == (OFFICIAL_MEAN, OFFICIAL_STD)
    video = torch.randn(*VIDEO_SHAPE)
    with torch.no_grad():
        ours = ckpt.model(video)
    assert (ours - hf_reference_logits(hf_model, video)).abs().max() <= 1e-4
    assert ckpt.labels == [f'class_{i}' for i in range(5)]


def test_official_checkpoint_with_labels_file_and_more_frames(tmp_path, make_hf_model):
    hf_model = make_hf_model()
    path = tmp_path / 'k.pyth'
    torch.save({'model_state': official_state_from_hf(hf_model)}, path)
    labels = tmp_path / 'labels.txt'
    labels.write_text('\n'.join(f'verb {i}' for i in range(5)) + '\n')
    ckpt = load_checkpoint(path, labels=labels, num_heads=4, num_frames=8)
    assert ckpt.labels == [f'verb {i}' for i in range(5)]
    assert ckpt.model.time_embed.shape[1] == 8
    video = torch.randn(1, 8, 3, 32, 32)
    reference = hf_resized_reference(hf_model, make_hf_model, frames=8, size=32)
    with torch.no_grad():
        # Resizing the time embedding at load time equals the official resizing at run time.
        assert (ckpt.model(video) - reference(pixel_values=video).logits).abs().max() <= 1e-4


def test_own_format_round_trip_keeps_weights_labels_and_normalisation(tmp_path):
    config = TimeSformerConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2,
                               num_heads=4, num_classes=3)
    model = randomise_(TimeSformer(config)).eval()
    meta = save_checkpoint(tmp_path / 'motion', model, ['a', 'b', 'c'], mean=(0.1, 0.2, 0.3),
                           std=(0.4, 0.5, 0.6), source='unit test', trained_steps=12)
    assert meta == tmp_path / 'motion.json' and (tmp_path / 'motion.safetensors').is_file()
    # The weights get the JSON's permissions (the umask's), not safetensors' owner-only ones.
    assert (tmp_path / 'motion.safetensors').stat().st_mode == meta.stat().st_mode
    for path in (meta, tmp_path / 'motion.safetensors'):
        assert detect_format(path) == 'timesformer_ros'
        ckpt = load_checkpoint(path)
        assert ckpt.config == config
        assert ckpt.labels == ['a', 'b', 'c']
        assert ckpt.mean == (0.1, 0.2, 0.3) and ckpt.std == (0.4, 0.5, 0.6)
        assert ckpt.source == 'unit test' and ckpt.extra == {'trained_steps': 12}
        video = torch.randn(1, 4, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(ckpt.model(video), model(video))
    model2, labels = load_model(meta)
    assert labels == ['a', 'b', 'c'] and isinstance(model2, TimeSformer)


def test_convert_console_script_writes_the_own_format(tmp_path, make_hf_model):
    hf_model = make_hf_model('joint_space_time')
    src = tmp_path / 'official.pyth'
    torch.save({'model_state': official_state_from_hf(hf_model)}, src)
    labels = tmp_path / 'labels.json'
    labels.write_text(json.dumps({str(i): f'act{i}' for i in range(5)}))
    dst = tmp_path / 'out' / 'converted'
    result = subprocess.run(
        console_script('timesformer_convert') + [
            str(src), str(dst), '--labels', str(labels), '--num-heads', '4'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'joint_space_time' in result.stdout
    ckpt = load_checkpoint(dst.with_suffix('.json'))
    assert ckpt.labels == [f'act{i}' for i in range(5)]
    assert ckpt.source.startswith('official:')
    video = torch.randn(*VIDEO_SHAPE)
    with torch.no_grad():
        assert (ckpt.model(video) - hf_reference_logits(hf_model, video)).abs().max() <= 1e-4


def test_convert_console_script_reports_a_bad_source_in_one_line(tmp_path):
    bad = tmp_path / 'notes.pyth'
    bad.write_text('these are not weights')
    result = subprocess.run(
        console_script('timesformer_convert') + [str(bad), str(tmp_path / 'x')],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith('timesformer_convert: error: ')
    assert str(bad) in result.stderr and 'Traceback' not in result.stderr


@pytest.mark.parametrize('attention_type', ['divided_space_time', 'space_only'])
def test_vit_transfer_static_clip_gives_the_vit_logits(attention_type):
    timm_vit = pytest.importorskip('timm.models.vision_transformer')
    vit = randomise_(timm_vit.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0,
        num_classes=5)).eval()
    model = TimeSformer(TimeSformerConfig(
        img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=4,
        mlp_ratio=2.0, num_classes=5, attention_type=attention_type))
    load_vit_weights_into_timesformer(model, vit)
    model.eval()
    frame = torch.randn(2, 3, 32, 32)
    clip = frame[:, None].expand(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert (model(clip) - vit(frame)).abs().max() <= 1e-4
    if attention_type == 'divided_space_time':
        blk = model.blocks[1]
        assert torch.equal(blk.temporal_attn.qkv.weight, blk.attn.qkv.weight)
        assert torch.equal(blk.temporal_norm1.weight, blk.norm1.weight)
        assert torch.count_nonzero(blk.temporal_fc.weight) == 0


def test_vit_transfer_rejects_a_vit_with_parts_the_timesformer_lacks():
    timm_vit = pytest.importorskip('timm.models.vision_transformer')
    vit = timm_vit.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                     num_heads=4, num_classes=5, init_values=1e-5)
    model = TimeSformer(TimeSformerConfig(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                          num_heads=4, num_classes=5))
    with pytest.raises(CheckpointError, match=r'blocks\.0\.ls1\.gamma'):
        load_vit_weights_into_timesformer(model, vit)


# -- bad input --------------------------------------------------------------------------------

def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match='checkpoint not found: .*nope.pyth'):
        load_checkpoint(tmp_path / 'nope.pyth')


def test_truncated_official_checkpoint(tmp_path, make_hf_model):
    path = tmp_path / 'k400.pyth'
    torch.save({'model_state': official_state_from_hf(make_hf_model())}, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'k400\.pyth: not a readable PyTorch checkpoint'):
        load_checkpoint(path)


def test_truncated_safetensors(tmp_path):
    model = TimeSformer(TimeSformerConfig(img_size=32, patch_size=8, embed_dim=32, depth=1,
                                          num_heads=4, num_classes=2))
    meta = save_checkpoint(tmp_path / 'm', model, ['a', 'b'])
    weights = tmp_path / 'm.safetensors'
    weights.write_bytes(weights.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r'm\.safetensors: not a readable safetensors'):
        load_checkpoint(meta)


def test_foreign_files_are_named(tmp_path):
    text = tmp_path / 'readme.pth'
    text.write_text('hello')
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        load_checkpoint(text)
    resnet = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(8, 3, 7, 7), 'fc.weight': torch.zeros(2, 8)}, resnet)
    with pytest.raises(CheckpointError,
                       match=r"not a TimeSformer state dict: missing \['cls_token'"):
        load_checkpoint(resnet)
    lonely = tmp_path / 'w.safetensors'
    lonely.write_bytes(b'\0' * 16)
    with pytest.raises(CheckpointError, match='no w.json beside it'):
        load_checkpoint(lonely)
    other_json = tmp_path / 'other.json'
    other_json.write_text(json.dumps({'format': 'something-else'}))
    with pytest.raises(CheckpointError, match="not a timesformer_ros checkpoint description"):
        load_checkpoint(other_json)
    empty_dir = tmp_path / 'dir'
    empty_dir.mkdir()
    with pytest.raises(CheckpointError, match='without config.json'):
        load_checkpoint(empty_dir)


def test_mismatched_keys_and_shapes_are_listed_never_loaded_silently(tmp_path, make_hf_model):
    state = official_state_from_hf(make_hf_model(), prefix='')
    del state['blocks.1.mlp.fc2.bias']
    state['blocks.0.extra.weight'] = torch.zeros(3)
    path = tmp_path / 'bad.pyth'
    torch.save({'model_state': state}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, num_heads=4)
    message = str(info.value)
    assert "missing keys ['blocks.1.mlp.fc2.bias']" in message
    assert "unexpected keys ['blocks.0.extra.weight']" in message

    state = official_state_from_hf(make_hf_model(), prefix='')
    state['blocks.1.norm2.weight'] = torch.ones(7)
    torch.save({'model_state': state}, path)
    with pytest.raises(CheckpointError,
                       match=r'blocks\.1\.norm2\.weight: \(7,\) vs model \(32,\)'):
        load_checkpoint(path, num_heads=4)


def test_a_state_dict_without_the_mlp_weight_that_sizes_the_mlp_fails_in_one_line(
        tmp_path, make_hf_model):
    """Issue 18: the MLP width is read from blocks.0.mlp.fc1.weight; without it a KeyError."""
    state = official_state_from_hf(make_hf_model(), prefix='model.')
    del state['model.blocks.0.mlp.fc1.weight']
    path = tmp_path / 'no_fc1.pyth'
    torch.save({'model_state': state}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, num_heads=4)
    message = str(info.value)
    assert message.startswith(f'{path}: not a TimeSformer state dict: ')
    assert "missing ['blocks.0.mlp.fc1.weight']" in message and '\n' not in message


def test_a_huggingface_config_without_a_size_fails_naming_the_file(tmp_path, make_hf_model):
    make_hf_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / 'config.json').read_text())
    del config['intermediate_size']
    (tmp_path / 'config.json').write_text(json.dumps(config))
    expected = r"config\.json: not a Hugging Face TimesformerConfig: missing \['intermediate_size'"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(tmp_path)


def test_labels_that_do_not_match_the_head(tmp_path, make_hf_model):
    make_hf_model().save_pretrained(tmp_path / 'hf')
    labels = tmp_path / 'labels.txt'
    labels.write_text('one\ntwo\nthree\n')
    with pytest.raises(CheckpointError, match='has 3 labels but the model head has 5 classes'):
        load_checkpoint(tmp_path / 'hf', labels=labels)


def test_own_format_with_missing_weights_file(tmp_path):
    model = TimeSformer(TimeSformerConfig(img_size=32, patch_size=8, embed_dim=32, depth=1,
                                          num_heads=4, num_classes=2))
    meta = save_checkpoint(tmp_path / 'm', model, ['a', 'b'])
    Path(tmp_path / 'm.safetensors').unlink()
    with pytest.raises(CheckpointError, match='weights file .*m.safetensors is missing'):
        load_checkpoint(meta)


# -- the clip rate ----------------------------------------------------------------------------

def _tiny_model():
    config = TimeSformerConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2,
                               num_heads=4, num_classes=3)
    return randomise_(TimeSformer(config)).eval()


def test_the_clip_rate_is_written_read_and_checked(tmp_path):
    meta = save_checkpoint(tmp_path / 'rated', _tiny_model(), ['a', 'b', 'c'], clip_fps=10.0)
    assert json.loads(meta.read_text())['clip_fps'] == 10.0
    assert load_checkpoint(meta).clip_fps == 10.0
    unrated = save_checkpoint(tmp_path / 'unrated', _tiny_model(), ['a', 'b', 'c'])
    assert 'clip_fps' not in json.loads(unrated.read_text())
    assert load_checkpoint(unrated).clip_fps is None
    # Rates outside 0.01..1000 fps (issue 29: 1e-300 in a sidecar once gave 0 windows, no word).
    for bad in (0, -5, 'fast', True, 1e6, 1e-300, 1e-9, 0.001):
        description = json.loads(meta.read_text())
        description['clip_fps'] = bad
        meta.write_text(json.dumps(description))
        with pytest.raises(CheckpointError, match=r'rated\.json: clip_fps must be a'):
            load_checkpoint(meta)
    with pytest.raises(CheckpointError, match='clip_fps must be'):
        save_checkpoint(tmp_path / 'nan', _tiny_model(), ['a', 'b', 'c'], clip_fps=float('nan'))


def test_an_official_name_states_the_clip_rate(tmp_path, make_hf_model):
    state = {'model_state': official_state_from_hf(make_hf_model())}     # 4 frames
    for name, fps in [('TimeSformer_divST_4x32_224_K400.pyth', 30 / 32),
                      ('TimeSformer_divST_4x16_448_K600.pyth', 30 / 16),
                      ('TimeSformer_divST_8x32_224_K400.pyth', None),   # not its 4 frames
                      ('k400.pyth', None)]:
        torch.save(state, tmp_path / name)
        assert load_checkpoint(tmp_path / name, num_heads=4).clip_fps == fps, name


def convert(*args):
    return subprocess.run(console_script('timesformer_convert') + [*map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_convert_records_the_clip_rate_from_the_name_or_a_flag(tmp_path, make_hf_model):
    hf_model = make_hf_model()
    official = tmp_path / 'TimeSformer_divST_4x32_224_K400.pyth'
    torch.save({'model_state': official_state_from_hf(hf_model)}, official)
    hf_dir = tmp_path / 'hf'
    hf_model.save_pretrained(hf_dir)
    cases = [((official,), 0.9375),                                  # from the name
             ((official, '--clip-fps', '2.5'), 2.5),                  # the flag wins
             ((hf_dir, '--frame-interval', '4', '--camera-fps', '25'), 6.25),
             ((hf_dir,), None)]
    for i, (args, fps) in enumerate(cases):
        result = convert(*args, tmp_path / f'out{i}', '--num-heads', '4')
        assert result.returncode == 0, result.stderr
        assert load_checkpoint(tmp_path / f'out{i}.json').clip_fps == fps, args
        assert (f'{fps:g} fps clips' if fps else 'clip rate unknown') in result.stdout
    for flags, message in [(('--clip-fps', '0'), 'clip_fps must be'),
                           (('--frame-interval', '0'), 'frame interval must be a positive'),
                           (('--frame-interval', '4', '--camera-fps', '-1'), 'camera rate')]:
        result = convert(hf_dir, tmp_path / 'bad', *flags)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    # A converted copy keeps the rate of its source.
    assert convert(tmp_path / 'out1.json', tmp_path / 'again').returncode == 0
    assert load_checkpoint(tmp_path / 'again.json').clip_fps == 2.5
