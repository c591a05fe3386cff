"""timesformer_export: a checkpoint as an ONNX file that is a checkpoint on its own.

    timesformer_export --out motion.onnx                       # the embedded model
    timesformer_export CHECKPOINT --out model.onnx [--labels FILE] [--clip-fps FPS]

Any checkpoint the loader reads (or preset:NAME, random weights). The file takes `video`
(B, T, 3, S, S) float32 with a dynamic batch and gives `logits`, `spatial` and `temporal`,
computed by `engine.forward_with_summaries` as the PyTorch engine computes them; opset 18, so
that LayerNorm is one `LayerNormalization` (TensorRT keeps it in FP32 under FP16). Its metadata
(`onnx_engine.metadata`) holds the config, labels, mean/std, clip rate, the source's SHA-256
and the source's label-safe transformations (`views`: the ONNX engine scores the same test-time
views as the PyTorch engine).

Exported with torch's default exporter (`dynamo=True`, torch.export; it needs onnxscript):
the model's einops calls are functions, which it traces (the einops layers are what fail in it).
Unless --no-verify (or without onnxruntime, which is said), the written file is run on ONNX
Runtime's CPU provider at batch 1 and 3 and compared with PyTorch. A malformed source or
argument exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from .checkpoints import Checkpoint, CheckpointError, check_clip_fps, embedded_checkpoint
from .digests import checkpoint_files, digest_of
from .engine import EngineError, checkpoint_of, forward_with_summaries
from .model import TimeSformer
from .onnx_engine import INPUT, OPSET, OUTPUTS, metadata, runtime
from .views import declared

LOGGER = logging.getLogger(__name__)

MAX_BATCH = 4096                # the largest batch the exported graph declares
EXTERNAL_DATA_BYTES = 1 << 30   # heavier weights go into FILE.onnx.data beside it (limit 2 GiB)
TOLERANCE = 1e-4                # float32, PyTorch against ONNX Runtime's CPU provider


class Summaries(nn.Module):
    """The network with the attention summaries the node publishes, as one graph to export."""

    def __init__(self, model: TimeSformer):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor):
        return forward_with_summaries(self.model, video)


def source_sha256(checkpoint: Checkpoint) -> str:
    """SHA-256 of the checkpoint's files (both of the own format's), or of random weights."""
    path = Path(checkpoint.path) if checkpoint.path else None
    if path is not None and path.exists():
        return digest_of(checkpoint_files(path))
    sha = hashlib.sha256()
    for name, value in checkpoint.model.state_dict().items():
        sha.update(name.encode() + b'\0' + value.detach().cpu().float().numpy().tobytes())
    return sha.hexdigest()


def export_onnx(checkpoint: Checkpoint, out: Path, clip_fps: Optional[float] = None,
                opset: int = OPSET) -> Path:
    """Write `checkpoint` as an ONNX file at `out` (weights beside it when over 1 GiB)."""
    runtime('onnx', out)
    runtime('onnxscript', out)        # torch.onnx's exporter is built on it
    symmetries = declared(checkpoint)      # checked before the export's work
    model = checkpoint.model.to('cpu', torch.float32).eval()
    cfg = model.config
    example = torch.zeros(2, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size)
    batch = torch.export.Dim('batch', min=1, max=MAX_BATCH)
    program = torch.onnx.export(
        Summaries(model).eval(), (example,), dynamo=True, opset_version=opset,
        input_names=[INPUT], output_names=list(OUTPUTS), dynamic_shapes={INPUT: {0: batch}},
        verbose=False, optimize=True)
    rate = clip_fps if clip_fps is not None else checkpoint.clip_fps
    program.model.metadata_props.update(metadata(
        cfg, checkpoint.labels, checkpoint.mean, checkpoint.std, rate,
        checkpoint.source or checkpoint.path, source_sha256(checkpoint), symmetries))
    weights = sum(p.numel() * 4 for p in model.parameters())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(out), external_data=weights > EXTERNAL_DATA_BYTES)
    return out


def verify(path: Path, model: TimeSformer, batches: Sequence[int] = (1, 3)) -> float:
    """Return the largest difference of any output between ONNX Runtime (CPU) and PyTorch."""
    ort = runtime('onnxruntime', path)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    cfg = model.config
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in batches:
        video = torch.randn(batch, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size,
                            generator=generator)
        with torch.inference_mode():
            expected = forward_with_summaries(model, video)
        got = session.run(list(OUTPUTS), {INPUT: video.numpy()})
        for want, have in zip(expected, got):
            worst = max(worst, float((want - torch.from_numpy(have)).abs().max()))
    return worst


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the timesformer_export console script."""
    parser = argparse.ArgumentParser(prog='timesformer_export', description=__doc__.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='any checkpoint the node reads, or preset:NAME (default: the '
                             'embedded model)')
    parser.add_argument('--out', type=Path, required=True, help='the .onnx file to write')
    parser.add_argument('--labels', help='labels file replacing the checkpoint\'s labels')
    parser.add_argument('--clip-fps', type=float,
                        help='the clip rate to record (default: the checkpoint\'s)')
    parser.add_argument('--opset', type=int, default=OPSET, choices=range(17, OPSET + 1),
                        metavar=f'17..{OPSET}', help='ONNX opset (default: %(default)s)')
    parser.add_argument('--no-verify', action='store_true',
                        help='do not compare the file on ONNX Runtime with PyTorch')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    source = args.checkpoint or str(embedded_checkpoint())
    try:
        if args.out.suffix != '.onnx':
            raise CheckpointError(f'--out {args.out}: the file name must end in .onnx (the node '
                                  f'picks the ONNX Runtime backend by it)')
        clip_fps = check_clip_fps(args.clip_fps, '--clip-fps') \
            if args.clip_fps is not None else None
        checkpoint = checkpoint_of(source, args.labels, LOGGER)
        out = export_onnx(checkpoint, args.out, clip_fps, args.opset)
        verified = not args.no_verify and importlib.util.find_spec('onnxruntime') is not None
        worst = verify(out, checkpoint.model) if verified else None
    except (CheckpointError, EngineError) as exc:
        print(f'timesformer_export: error: {exc}', file=sys.stderr)
        return 2
    except OSError as exc:
        print(f'timesformer_export: error: cannot write {args.out}: {exc.strerror or exc}',
              file=sys.stderr)
        return 2
    cfg = checkpoint.config
    checked = (f'; ONNX Runtime CPU vs PyTorch at batch 1 and 3: largest difference '
               f'{worst:.1e}' if worst is not None else
               '; not verified' if args.no_verify else
               '; not verified: onnxruntime is not installed')
    print(f'wrote {out} ({cfg.attention_type}, {cfg.num_frames}x{cfg.img_size}, '
          f'{cfg.num_classes} classes, opset {args.opset}{checked})')
    if worst is not None and worst > TOLERANCE:
        print(f'timesformer_export: error: {out} differs from PyTorch by {worst:.1e}, more than '
              f'{TOLERANCE:g}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
