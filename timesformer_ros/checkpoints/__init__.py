"""Reading and writing TimeSformer weights in every supported format, and label lists.

Supported sources (detected by `detect_format`):

* ``official``: facebookresearch/TimeSformer `.pyth` files (a dict with ``model_state``, keys
  prefixed ``model.`` and sometimes ``module.``), or any torch-saved state dict with the official
  key names.
* ``huggingface``: a directory written by `TimesformerForVideoClassification.save_pretrained`
  (config.json and model.safetensors or pytorch_model.bin; labels from ``id2label``).
* ``timesformer_ros``: this project's format, ``NAME.safetensors`` with a ``NAME.json`` beside
  it holding the configuration, labels, normalisation mean/std and where the weights came from.

Every conversion is a pure dict -> dict function onto the official key names, which are also the
names of `model.TimeSformer`'s parameters. Position and time embeddings whose size differs from
the requested configuration are resized explicitly, in float32, and logged.

A checkpoint is untrusted input, read in two steps by `load_checkpoint`:

1. What it describes, before any weight is read: the configuration (types, ranges and
   `CONFIG_LIMITS`), the labels (distinct non-empty strings, one per class), the normalisation
   (finite, std > 0) and the names, shapes and dtypes of its tensors (from the safetensors
   header, or a memory-mapped torch file) against a model built on the meta device. Missing or
   unexpected keys and shape mismatches are listed; nothing is loaded with `strict=False`.
2. The weights: read, checked to be finite, and loaded into the model, whose memory is
   allocated only now.

So memory follows the file's real size, not what its description claims. Every malformed
input raises `CheckpointError` with one line naming the file and the problem.

One module per concern: `base` (the error, the limits, the clip rate, the embedded model),
`config` (key names and configurations), `labels` (labels and normalisation), `weights`
(resizing, strict loading, timm ViT weights) and `formats` (reading and writing each format);
`timesformer_ros.convert` is the `timesformer_convert` command line.
"""

from .base import (  # noqa: F401
    CONFIG_LIMITS, EMBEDDED_CHECKPOINT, FORMAT_NAME, FORMAT_VERSION, KINETICS_FPS,
    MAX_ABS_MEAN, MAX_CLIP_FPS, MAX_JSON_BYTES, MAX_MLP_RATIO, MAX_PARAMETERS, MAX_PATCHES,
    MAX_STD, MAX_TENSORS, MIN_STD, OFFICIAL_MEAN, OFFICIAL_STD, Checkpoint, CheckpointContents,
    CheckpointError, PathLike, check_clip_fps, clip_fps_from_interval, clip_fps_from_name,
    embedded_checkpoint)
from .config import (  # noqa: F401
    check_config, config_from_hf, config_from_state_dict, config_from_values, hf_to_official,
    official_to_hf_key, strip_prefixes)
from .labels import (  # noqa: F401
    check_labels, check_normalisation, default_labels, labels_from_id2label, read_labels)
from .weights import (  # noqa: F401
    build_model, check_finite, check_fit, load_state_dict_strict,
    load_vit_weights_into_timesformer, resize_embeddings)
from .formats import (  # noqa: F401
    detect_format, load_checkpoint, load_model, own_format_files, save_checkpoint)

__all__ = [
    'CONFIG_LIMITS', 'EMBEDDED_CHECKPOINT', 'FORMAT_NAME', 'FORMAT_VERSION', 'KINETICS_FPS',
    'MAX_ABS_MEAN', 'MAX_CLIP_FPS', 'MAX_JSON_BYTES', 'MAX_MLP_RATIO', 'MAX_PARAMETERS',
    'MAX_PATCHES', 'MAX_STD', 'MAX_TENSORS', 'MIN_STD', 'OFFICIAL_MEAN', 'OFFICIAL_STD',
    'Checkpoint', 'CheckpointContents', 'CheckpointError', 'PathLike', 'check_clip_fps',
    'clip_fps_from_interval', 'clip_fps_from_name', 'embedded_checkpoint', 'check_config',
    'config_from_hf', 'config_from_state_dict', 'config_from_values', 'hf_to_official',
    'official_to_hf_key', 'strip_prefixes', 'check_labels', 'check_normalisation',
    'default_labels', 'labels_from_id2label', 'read_labels', 'build_model', 'check_finite',
    'check_fit', 'load_state_dict_strict', 'load_vit_weights_into_timesformer',
    'resize_embeddings', 'detect_format', 'load_checkpoint', 'load_model', 'own_format_files',
    'save_checkpoint',
]
