"""Shared fixtures: seeds, tiny configurations, reference models."""

import os
import random

import numpy as np
import pytest
import torch

# Tests never touch a GPU even where one exists, unless a test asks for it explicitly.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def randomise_(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter random values, so zero-initialised parts (temporal_fc, time
    embeddings) carry signal and a wrong mapping cannot hide behind a zero."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0.0, std)
    return module


@pytest.fixture
def make_hf_model():
    """A randomly initialised transformers TimesformerForVideoClassification (tiny config)."""
    transformers = pytest.importorskip('transformers')

    def make(attention_type='divided_space_time', num_labels=5, **overrides):
        values = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=32,
                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                      attention_type=attention_type, num_labels=num_labels)
        values.update(overrides)
        config = transformers.TimesformerConfig(**values)
        config.id2label = {i: f'action_{i}' for i in range(num_labels)}
        config.label2id = {v: k for k, v in config.id2label.items()}
        return randomise_(transformers.TimesformerForVideoClassification(config)).eval()

    return make


def hf_reference_logits(hf_model, video: torch.Tensor) -> torch.Tensor:
    """Logits of the official network computed with transformers' modules.

    For divided and joint attention transformers' logits are the official ones. For space_only
    transformers returns one row per frame, while the official network averages the frames'
    token features before the final norm and head; that is rebuilt here from transformers'
    pre-norm encoder output (hidden_states[-1]) with its own layernorm and classifier.
    """
    with torch.no_grad():
        out = hf_model(pixel_values=video, output_hidden_states=True)
        if hf_model.config.attention_type != 'space_only':
            return out.logits
        batch, frames = video.shape[:2]
        cls = out.hidden_states[-1][:, 0].reshape(batch, frames, -1).mean(dim=1)
        return hf_model.classifier(hf_model.timesformer.layernorm(cls))
