"""Hostile checkpoints: each is refused in one line naming the file, in bounded memory.

Every case builds real files in a temporary directory, in the format it attacks: the own
NAME.json + NAME.safetensors, an official .pyth, or a Hugging Face directory (written here
without transformers: config.json and model.safetensors under transformers' names). Each must
be refused by `load_checkpoint` with a one-line `CheckpointError` naming the file, and by
`timesformer_convert` with exit status 2 and one line. Descriptions of models far larger than
their weights must be refused before memory is allocated for them: those run as processes
(the converter, the node) whose peak RSS is compared with that of loading a tiny checkpoint.
"""

import json
import os
import re
import resource
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import pytest
import torch
from safetensors.torch import save_file

from conftest import console_script, fresh_domain, randomise_
from timesformer_ros.checkpoints import (
    CheckpointError, load_checkpoint, official_to_hf_key, save_checkpoint)
from timesformer_ros.convert import convert_main
from timesformer_ros.model import TimeSformer, TimeSformerConfig

TINY = TimeSformerConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2,
                         num_heads=4, num_classes=3)
LABELS = ['left', 'right', 'still']
DEEP = 100_000                          # nesting of the deeply nested JSON files
NAN, INF = float('nan'), float('inf')
EXTRA_MB = 500                          # allowed peak RSS above loading a tiny checkpoint


class Attack(NamedTuple):
    path: Path                          # what is loaded
    culprit: Path                       # the file the message must name
    labels: Optional[Path] = None       # a labels file given with it
    num_heads: Optional[int] = None     # an override given with it

    def kwargs(self) -> dict:
        out = {'labels': self.labels} if self.labels else {}
        return {**out, 'num_heads': self.num_heads} if self.num_heads else out

    def argv(self, dst: Path) -> list:
        out = [str(self.path), str(dst)]
        out += ['--labels', str(self.labels)] if self.labels else []
        return out + (['--num-heads', str(self.num_heads)] if self.num_heads else [])


def tiny_model() -> TimeSformer:
    torch.manual_seed(0)
    return randomise_(TimeSformer(TINY)).eval()


def tiny_state() -> dict:
    return {k: v.clone() for k, v in tiny_model().state_dict().items()}


# -- builders: each returns a function of a directory that writes the files -----------------

def own(edit: Optional[Callable] = None, edit_state: Optional[Callable] = None,
        text: Optional[Callable] = None) -> Callable:
    """Write the own format, then `edit(description, directory)` or `edit_state(weights)`.

    `text(description)` returns the description's new text, for what json.dumps cannot write.
    """
    def build(directory: Path) -> Attack:
        meta = save_checkpoint(directory / 'ckpt' / 'm', tiny_model(), LABELS)
        weights = meta.with_suffix('.safetensors')
        if edit_state:
            state = tiny_state()
            edit_state(state)
            save_file(state, str(weights))
            return Attack(meta, meta)
        data = json.loads(meta.read_text())
        if edit:
            edit(data, directory)
        meta.write_text(text(data) if text else json.dumps(data))
        return Attack(meta, meta)
    return build


def own_set(**fields) -> Callable:
    return own(lambda data, _: data.update(fields))


def own_config(**fields) -> Callable:
    return own(lambda data, _: data['config'].update(fields))


def weights_elsewhere(name: Callable) -> Callable:
    """Point the description at valid weights outside its directory, at `name(directory)`."""
    def edit(data: dict, directory: Path):
        other = save_checkpoint(directory / 'elsewhere' / 'm', tiny_model(), LABELS)
        data['weights'] = name(directory, other.with_suffix('.safetensors'))
    return own(edit)


def prefixed(key: object) -> object:
    """Return `key` as the official wrapper names it (`model.`); a key that is no string stays."""
    return f'model.{key}' if isinstance(key, str) else key


def official(edit_state: Optional[Callable] = None, labels: Optional[tuple] = None,
             num_heads: Optional[int] = None) -> Callable:
    """Write an official .pyth after `edit_state(state)`; `labels`: (file name, contents)."""
    def build(directory: Path) -> Attack:
        state = tiny_state()
        if edit_state:
            edit_state(state)
        path = directory / 'k400.pyth'
        torch.save({'model_state': {prefixed(k): v for k, v in state.items()}, 'epoch': 1,
                    'cfg': 'MODEL:\n  NUM_CLASSES: 3\n'}, path)
        if labels is None:
            return Attack(path, path, num_heads=num_heads)
        name, contents = labels
        labels_path = directory / name
        if isinstance(contents, bytes):
            labels_path.write_bytes(contents)
        else:
            labels_path.write_text(contents)
        return Attack(path, labels_path, labels_path, num_heads)
    return build


def hf_config() -> dict:
    return {'model_type': 'timesformer', 'image_size': 32, 'patch_size': 8, 'num_channels': 3,
            'num_frames': 4, 'hidden_size': 32, 'num_hidden_layers': 2,
            'num_attention_heads': 4, 'intermediate_size': 128, 'hidden_act': 'gelu',
            'layer_norm_eps': 1e-6, 'qkv_bias': True, 'attention_type': 'divided_space_time',
            'id2label': {str(i): name for i, name in enumerate(LABELS)},
            'label2id': {name: i for i, name in enumerate(LABELS)}}


def hf(edit: Optional[Callable] = None, edit_state: Optional[Callable] = None,
       text: Optional[str] = None, preprocessor: Optional[dict] = None) -> Callable:
    """Write a Hugging Face directory after `edit(config)`, `edit_state(weights)`."""
    def build(directory: Path) -> Attack:
        path = directory / 'hf'
        path.mkdir()
        config = hf_config()
        if edit:
            edit(config)
        (path / 'config.json').write_text(text if text else json.dumps(config))
        state = {official_to_hf_key(k): v for k, v in tiny_state().items()}
        if edit_state:
            edit_state(state)
        save_file(state, str(path / 'model.safetensors'))
        culprit = path / 'config.json'
        if preprocessor is not None:
            culprit = path / 'preprocessor_config.json'
            culprit.write_text(json.dumps(preprocessor))
        return Attack(path, culprit)
    return build


def hf_set(**fields) -> Callable:
    return hf(lambda config: config.update(fields))


def deep_json() -> str:
    return '[' * DEEP + ']' * DEEP


def put(key: str, value: float, index: tuple = (0,)) -> Callable:
    def edit(state: dict):
        state[key][index] = value
    return edit


def replace(key: str, value: Callable) -> Callable:
    def edit(state: dict):
        state[key] = value(state[key])
    return edit


# What would build TimeSformers of about 4.6 GB (embed_dim 2048, depth 16) and 51 GB for one
# matrix (embed_dim 65536), with the tiny weights.
CLAIMS_5GB = dict(embed_dim=2048, depth=16, num_heads=32, img_size=224, patch_size=16,
                  num_frames=8)
CLAIMS_51GB = dict(embed_dim=65536, num_heads=1024)
HF_5GB = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
              intermediate_size=8192, image_size=224, patch_size=16, num_frames=8)
HF_51GB = dict(hidden_size=65536, num_attention_heads=1024, intermediate_size=262144)
FC1 = 'blocks.0.mlp.fc1.weight'
PROJ = 'patch_embed.proj.weight'
HF_FC1 = official_to_hf_key(FC1)

# name -> (builder, a regular expression the message must match)
CASES = {
    # the own format: a description (NAME.json) beside its weights (NAME.safetensors)
    'own_claims_5gb': (own_config(**CLAIMS_5GB), r'shape mismatches \[.*vs model'),
    'own_claims_51gb': (own_config(**CLAIMS_51GB), 'embed_dim 65536 is above the limit of 8192'),
    'own_claims_146g_parameters': (
        own_config(embed_dim=8192, depth=128, num_heads=64),
        'parameters, above the limit of 2,000,000,000'),
    'own_claims_huge_grid': (own_config(img_size=2048, patch_size=1),
                             'patches per frame, above the limit'),
    'own_embed_dim_string': (own_config(embed_dim='32'),
                             "config embed_dim must be an integer, got '32'"),
    'own_depth_float': (own_config(depth=2.5), 'config depth must be an integer, got 2.5'),
    'own_depth_bool': (own_config(depth=True), 'config depth must be an integer, got True'),
    'own_depth_huge_int': (own_config(depth=10 ** 400),
                           r'depth 1000\d+\.\.\.\d+ is above the limit of 128'),
    'own_qkv_bias_string': (own_config(qkv_bias='no'),
                            "config qkv_bias must be true or false, got 'no'"),
    'own_mlp_ratio_string': (own_config(mlp_ratio='four'), 'mlp_ratio must be a finite number'),
    'own_mlp_ratio_nan': (own_config(mlp_ratio=NAN), 'mlp_ratio must be a finite number'),
    'own_eps_string': (own_config(layer_norm_eps='x'), 'layer_norm_eps must be a finite'),
    'own_eps_negative': (own_config(layer_norm_eps=-1.0), 'layer_norm_eps must lie between'),
    'own_attention_number': (own_config(attention_type=3),
                             'config attention_type must be a string, got 3'),
    'own_heads_zero': (own_config(num_heads=0), 'num_heads must be a positive integer'),
    'own_unknown_field': (own_config(colour=1), r"unknown config fields \['colour'\]"),
    'own_config_list': (own_set(config=[1, 2]), 'config must be a JSON object'),
    'own_config_missing': (own(lambda data, _: data.pop('config')), 'no config'),
    'own_not_an_object': (own(text=lambda data: '[1, 2]'), 'expected a JSON object'),
    'own_deeply_nested': (own(text=lambda data: json.dumps(data)[:-1] + ', "notes": '
                              + deep_json() + '}'), 'nested too deeply'),
    'own_huge_integer_text': (own(text=lambda data: json.dumps(data)[:-1] + ', "n": '
                                  + '9' * 5000 + '}'), 'not readable JSON'),
    'own_version_string': (own_set(version='one'), "format version 'one' is not readable"),
    'own_version_future': (own_set(version=2), 'format version 2 is not readable here'),
    'own_source_list': (own_set(source=['x']), 'source must be a string'),
    'own_weights_number': (own_set(weights=5), 'weights must name a file in the same directory'),
    'own_weights_absolute': (weights_elsewhere(lambda d, other: str(other)),
                             'weights must name a file in the same directory'),
    'own_weights_parent': (weights_elsewhere(lambda d, other: '../elsewhere/m.safetensors'),
                           'weights must name a file in the same directory'),
    'own_weights_subdirectory': (weights_elsewhere(lambda d, other: 'sub/m.safetensors'),
                                 'weights must name a file in the same directory'),
    'own_weights_dot_dot': (own_set(weights='..'), 'weights must name a file'),
    'own_labels_integers': (own_set(labels=[1, 2, 3]), 'label 0 must be a string, got 1'),
    'own_labels_string': (own_set(labels='abc'),
                          "labels must be a list of names, got 'abc'"),
    'own_labels_nested': (own_set(labels=[['left'], 'right', 'still']),
                          "label 0 must be a string, got \\['left'\\]"),
    'own_labels_repeated': (own_set(labels=['left', 'left', 'still']),
                            r"labels must be distinct; repeated: \['left'\]"),
    'own_labels_empty': (own_set(labels=['left', '', 'still']), 'label 1 is empty'),
    'own_labels_blank': (own_set(labels=['left', '  ', 'still']), 'label 1 is empty'),
    'own_labels_two_lines': (own_set(labels=['left', 'ri\nght', 'still']),
                             'spans several lines'),
    'own_labels_too_few': (own_set(labels=['left', 'right']),
                           'has 2 labels but the model head has 3 classes'),
    'own_mean_nan': (own_set(mean=[NAN] * 3), 'mean .* is not finite'),
    'own_mean_0_255': (own_set(mean=[123.675, 116.28, 103.53]), r'mean .* is outside \[-10'),
    'own_std_zero': (own_set(std=[0, 0, 0]), 'std .* must lie between 0.001 and 1000'),
    'own_std_negative': (own_set(std=[-0.2] * 3), 'std .* must lie between'),
    'own_std_infinite': (own_set(std=[INF] * 3), 'std .* is not finite'),
    'own_mean_string': (own_set(mean='abc'), 'mean must be a list of 3 numbers'),
    'own_std_mixed': (own_set(std=[0.2, 'x', 0.2]), 'std must be a list of 3 numbers'),
    'own_std_two_channels': (own_set(std=[0.2, 0.2]), 'std must be a list of 3 numbers'),
    'own_weights_nan': (own(edit_state=put(FC1, NAN)),
                        r"non-finite values \(NaN or infinity\) in \['blocks.0.mlp.fc1"),
    'own_weights_infinite': (own(edit_state=put('head.bias', -INF)), "in \\['head.bias'\\]"),
    'own_weights_integer': (own(edit_state=replace('head.bias', lambda t: t.long())),
                            r'not floating point \[head.bias \(int64\)\]'),
    'own_weights_flat_pos_embed': (own(edit_state=replace('pos_embed', lambda t: t.flatten())),
                                   r'pos_embed: \(544,\) vs model \(1, 17, 32\)'),
    'own_weights_extra_tensor': (
        own(edit_state=lambda s: s.update({'blocks.0.extra': torch.ones(2)})),
        r"unexpected keys \['blocks.0.extra'\]"),
    # official .pyth files: the configuration is inferred from the tensors' shapes
    'official_pos_embed_1d': (official(replace('pos_embed', lambda t: t.flatten())),
                              r'pos_embed has shape \(544,\), expected'),
    'official_cls_token_0d': (official(replace('cls_token', lambda t: t.sum())),
                              r'cls_token has shape \(\), expected \(1, 1, embed_dim\)'),
    'official_patch_weight_2d': (official(replace(PROJ, lambda t: t.flatten(1))),
                                 'patch_embed.proj.weight has shape'),
    'official_patches_not_square': (official(replace(PROJ, lambda t: t[..., :4])),
                                    'patches are not square'),
    'official_fc1_1d': (official(replace(FC1, lambda t: t[0])), 'fc1.weight has shape'),
    'official_time_embed_empty': (official(replace('time_embed', lambda t: t[:, :0])),
                                  r'time_embed has shape \(1, 0, 32\)'),
    'official_head_1d': (official(replace('head.weight', lambda t: t[0])),
                         'head.weight has shape'),
    'official_claims_1e8_blocks': (
        official(lambda s: s.update({'blocks.99999999.norm1.weight': torch.ones(32)})),
        'depth 100000000 is above the limit of 128'),
    'official_claims_60_blocks': (
        official(lambda s: s.update({'blocks.59.norm1.weight': torch.ones(32)})),
        r"missing keys \['blocks.10.attn.proj.bias', .*in all\)\]"),
    'official_keys_not_strings': (official(lambda s: s.update({7: torch.ones(1)})),
                                  'not a state dict of named dense tensors: \\[7\\]'),
    'official_twice_the_same_key': (
        official(lambda s: s.update({'module.cls_token': s['cls_token']})),
        "holds 'cls_token' twice"),
    'official_weights_nan': (official(put(FC1, NAN)), 'non-finite values'),
    'official_weights_integer': (official(replace('head.bias', lambda t: t.long())),
                                 r'not floating point \[head.bias \(int64\)\]'),
    'official_heads_do_not_divide': (official(num_heads=5),
                                     'embed_dim 32 is not divisible by num_heads 5'),
    'official_heads_negative': (official(num_heads=-3), 'num_heads must be a positive integer'),
    'official_labels_integers': (official(labels=('labels.json', '[1, 2, 3]')),
                                 'label 0 must be a string, got 1'),
    'official_labels_id2label_integers': (
        official(labels=('labels.json', '{"0": 1, "1": 2, "2": 3}')),
        'the name of id 0 must be a string, got 1'),
    'official_labels_bare_string': (official(labels=('labels.json', '"abc"')),
                                    "must hold a list of names or an id -> name map"),
    'official_labels_deeply_nested': (official(labels=('labels.json', deep_json())),
                                      'nested too deeply'),
    'official_labels_nested': (official(labels=('labels.json', '[["a"], "b", "c"]')),
                               'label 0 must be a string'),
    'official_labels_repeated_lines': (official(labels=('labels.txt', 'a\nb\na\n')),
                                       r"repeated: \['a'\]"),
    'official_labels_empty_name': (official(labels=('labels.json', '["a", "", "c"]')),
                                   'label 1 is empty'),
    'official_labels_binary': (official(labels=('labels.txt', b'\xff\xfe\x00a\nb\nc\n')),
                               'is not UTF-8 text'),
    'official_labels_too_few': (official(labels=('labels.txt', 'a\nb\n')),
                                'has 2 labels but the model head has 3 classes'),
    'official_labels_id_gap': (official(labels=('labels.json', '{"0": "a", "5": "b"}')),
                               'ids must be 0..1 without gaps'),
    # Hugging Face directories: config.json describes the model
    'hf_hidden_size_zero': (hf_set(hidden_size=0),
                            'hidden_size must be a positive integer, got 0'),
    'hf_hidden_size_string': (hf_set(hidden_size='32'),
                              "hidden_size must be a positive integer, got '32'"),
    'hf_missing_hidden_size': (hf(lambda c: c.pop('hidden_size')),
                               r"missing \['hidden_size'\]"),
    'hf_layers_float': (hf_set(num_hidden_layers=2.0),
                        'num_hidden_layers must be a positive integer, got 2.0'),
    'hf_channels_string': (hf_set(num_channels='3'), 'num_channels must be a positive'),
    'hf_intermediate_huge': (hf_set(intermediate_size=10 ** 6),
                             'intermediate_size 1000000 is above the limit of 512'),
    'hf_claims_5gb': (hf_set(**HF_5GB), r'does not fit the model: missing keys'),
    'hf_claims_51gb': (hf_set(**HF_51GB), 'hidden_size 65536 is above the limit of 8192'),
    'hf_qkv_bias_string': (hf_set(qkv_bias='yes'), 'qkv_bias must be true or false'),
    'hf_attention_type_number': (hf_set(attention_type=1), 'attention_type must be a string'),
    'hf_eps_string': (hf_set(layer_norm_eps='tiny'), 'layer_norm_eps must be a finite'),
    'hf_num_labels_string': (hf(lambda c: (c.pop('id2label'), c.update(num_labels='3'))),
                             "num_labels must be a positive integer, got '3'"),
    'hf_id2label_integers': (hf_set(id2label={'0': 1, '1': 2, '2': 3}),
                             'the name of id 0 must be a string, got 1'),
    'hf_id2label_list': (hf_set(id2label=['a', 'b', 'c']), 'id2label must be a JSON object'),
    'hf_id2label_repeated': (hf_set(id2label={'0': 'a', '1': 'a', '2': 'b'}),
                             r"repeated: \['a'\]"),
    'hf_id2label_empty_name': (hf_set(id2label={'0': 'a', '1': ' ', '2': 'b'}),
                               'label 1 is empty'),
    'hf_deeply_nested': (hf(text=deep_json()), 'nested too deeply'),
    'hf_act_list': (hf_set(hidden_act=['gelu']), 'hidden_act .* is not supported'),
    'hf_weights_nan': (hf(edit_state=put(HF_FC1, NAN)), 'non-finite values'),
    'hf_mean_nan': (hf(preprocessor={'image_mean': [NAN] * 3}), 'mean .* is not finite'),
    'hf_std_zero': (hf(preprocessor={'image_std': [0.0] * 3}), 'std .* must lie between'),
    'hf_mean_string': (hf(preprocessor={'image_mean': 'grey'}),
                       'mean must be a list of 3 numbers'),
}
# Descriptions of models far larger than their weights; loading them must stay small.
MEMORY_CASES = ['own_claims_5gb', 'own_claims_51gb', 'hf_claims_5gb', 'hf_claims_51gb',
                'official_claims_1e8_blocks']


@pytest.mark.parametrize('name', sorted(CASES))
def test_a_hostile_checkpoint_is_refused_in_one_line_naming_the_file(tmp_path, capsys, name):
    """Refuse it in `load_checkpoint`, and in `timesformer_convert` with exit status 2."""
    build, expected = CASES[name]
    attack = build(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(attack.path, **attack.kwargs())
    message = str(info.value)
    assert '\n' not in message and len(message) < 2000, message
    assert str(attack.culprit) in message
    assert re.search(expected, message), message

    dst = tmp_path / 'out' / 'converted'
    assert convert_main(attack.argv(dst)) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith('timesformer_convert: error: ')
    assert str(attack.culprit) in err
    assert not dst.with_suffix('.json').exists()


def test_the_cases_still_load_when_the_attack_is_left_out(tmp_path):
    """The builders write valid checkpoints: each case fails because of its attack alone."""
    for index, build in enumerate((own(), official(), hf())):
        (tmp_path / str(index)).mkdir()
        attack = build(tmp_path / str(index))
        ckpt = load_checkpoint(attack.path, **attack.kwargs())
        assert ckpt.config.embed_dim == 32 and len(ckpt.labels) == 3


def test_large_real_models_are_within_the_limits():
    """TimeSformer, -HR and -L (and a ViT-g-sized one) pass the limits; only tiny is built."""
    from timesformer_ros.checkpoints import check_config
    from timesformer_ros.model import PRESETS
    for config in (*PRESETS.values(), TimeSformerConfig(embed_dim=1408, depth=40, num_heads=16,
                                                        num_classes=21843)):
        assert check_config(config) is config


def test_a_weights_file_beside_its_description_by_a_plain_name_loads(tmp_path):
    meta = save_checkpoint(tmp_path / 'm', tiny_model(), LABELS)
    data = json.loads(meta.read_text())
    (tmp_path / 'm.safetensors').rename(tmp_path / 'weights-v2.safetensors')
    data['weights'] = 'weights-v2.safetensors'
    meta.write_text(json.dumps(data))
    assert load_checkpoint(meta).labels == LABELS


def test_a_single_number_as_hugging_face_mean_applies_to_every_channel(tmp_path):
    attack = hf(preprocessor={'image_mean': 0.5, 'image_std': 0.25})(tmp_path)
    ckpt = load_checkpoint(attack.path)
    assert ckpt.mean == (0.5,) * 3 and ckpt.std == (0.25,) * 3


def test_saving_refuses_what_loading_would_refuse(tmp_path):
    with pytest.raises(CheckpointError, match='std .* must lie between'):
        save_checkpoint(tmp_path / 'm', tiny_model(), LABELS, std=(0.0, 0.2, 0.2))
    with pytest.raises(CheckpointError, match='labels must be distinct'):
        save_checkpoint(tmp_path / 'm', tiny_model(), ['a', 'a', 'b'])
    assert not list(tmp_path.iterdir())


def test_a_device_file_is_not_read_as_a_checkpoint():
    with pytest.raises(CheckpointError, match='/dev/zero: not a regular file'):
        load_checkpoint('/dev/zero')


# -- as processes: exit status, one line, bounded memory ----------------------------------

def _cap_address_space():
    """Keep a process that regresses within 8 GiB of address space instead of the machine's."""
    resource.setrlimit(resource.RLIMIT_AS, (8 * 2 ** 30, 8 * 2 ** 30))


def run_measured(cmd: list, timeout: float = 120, **kwargs) -> tuple:
    """Run `cmd`; return (exit status, output, peak RSS in MB of that process alone)."""
    with tempfile.TemporaryFile('w+') as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=_cap_address_space, **kwargs)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return proc.returncode, out.read(), usage.ru_maxrss / 1024


@pytest.fixture(scope='module')
def convert_baseline_mb(tmp_path_factory):
    """Peak RSS of converting a valid tiny checkpoint."""
    directory = tmp_path_factory.mktemp('baseline')
    meta = save_checkpoint(directory / 'm', tiny_model(), LABELS)
    code, output, peak = run_measured(
        console_script('timesformer_convert') + [str(meta), str(directory / 'out')])
    assert code == 0, output
    return peak


@pytest.mark.parametrize('name', MEMORY_CASES)
def test_a_description_of_a_huge_model_is_refused_in_bounded_memory(tmp_path, name,
                                                                    convert_baseline_mb):
    build, expected = CASES[name]
    attack = build(tmp_path)
    code, output, peak = run_measured(
        console_script('timesformer_convert') + attack.argv(tmp_path / 'out'))
    assert code == 2, output
    assert output.count('\n') == 1 and output.startswith('timesformer_convert: error: ')
    assert str(attack.culprit) in output and 'Traceback' not in output
    assert peak < convert_baseline_mb + EXTRA_MB, (peak, convert_baseline_mb)


@pytest.fixture(scope='module')
def node_baseline_mb(tmp_path_factory):
    """Peak RSS of the node stopping at a checkpoint that does not exist."""
    pytest.importorskip('rclpy')
    missing = tmp_path_factory.mktemp('node') / 'none.json'
    env = {**os.environ, 'ROS_DOMAIN_ID': str(fresh_domain())}
    code, output, peak = run_measured(
        console_script('timesformer_node') + ['--ros-args', '-p', f'checkpoint:={missing}'],
        env=env)
    assert code == 2, output
    return peak


@pytest.mark.parametrize('name', ['own_claims_51gb', 'official_claims_1e8_blocks',
                                  'own_labels_integers', 'own_weights_parent', 'own_std_zero',
                                  'hf_hidden_size_zero', 'official_labels_deeply_nested'])
def test_the_node_stops_on_a_hostile_checkpoint_in_one_line(
        ros, tmp_path, name, node_baseline_mb):
    build, expected = CASES[name]
    attack = build(tmp_path)
    params = ['-p', f'checkpoint:={attack.path}']
    params += ['-p', f'labels:={attack.labels}'] if attack.labels else []
    code, output, peak = run_measured(
        console_script('timesformer_node') + ['--ros-args', *params], env=ros.env, timeout=60)
    assert code == 2, output
    assert 'Traceback' not in output
    fatal = [line for line in output.splitlines() if str(attack.culprit) in line]
    assert len(fatal) == 1 and 'cannot start: ' in fatal[0], output
    assert peak < node_baseline_mb + EXTRA_MB, (peak, node_baseline_mb)
