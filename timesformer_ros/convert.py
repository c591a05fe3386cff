"""`timesformer_convert` (or `python -m timesformer_ros.convert`): any checkpoint, own format."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from .checkpoints import (
    KINETICS_FPS, CheckpointError, check_clip_fps, clip_fps_from_interval, load_checkpoint,
    save_checkpoint)


def convert_main(argv: Optional[Sequence[str]] = None) -> int:
    """Run timesformer_convert SRC DST [--labels FILE]: write any source in the own format.

    A malformed source or argument exits with status 2 and one line saying why.
    """
    parser = argparse.ArgumentParser(
        prog='timesformer_convert',
        description='Convert an official .pyth, a Hugging Face directory or a timesformer_ros '
                    'checkpoint into the timesformer_ros format (DST.safetensors + DST.json).')
    parser.add_argument('src', help='checkpoint file or Hugging Face model directory')
    parser.add_argument('dst', help='output path (the .safetensors/.json suffix is optional)')
    parser.add_argument('--labels', help='labels file: one name per line, or JSON list/map')
    parser.add_argument('--num-heads', type=int,
                        help='attention heads (official checkpoints do not record it; '
                             'default embed_dim / 64)')
    parser.add_argument('--mean', type=float, nargs='+', help='normalisation mean per channel')
    parser.add_argument('--std', type=float, nargs='+', help='normalisation std per channel')
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument('--clip-fps', type=float,
                      help='frames per second of the clips the model was trained on (the node '
                           'samples at this rate); official checkpoints: read from a name '
                           'such as ..._8x32_... when not given')
    rate.add_argument('--frame-interval', type=int,
                      help='the model was trained on every Nth frame of --camera-fps video')
    parser.add_argument('--camera-fps', type=float, default=KINETICS_FPS,
                        help='the video rate --frame-interval refers to (default: %(default)g, '
                             'as Kinetics)')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    overrides = {'num_heads': args.num_heads} if args.num_heads is not None else {}
    try:
        clip_fps = (clip_fps_from_interval(args.frame_interval, args.camera_fps,
                                           '--frame-interval')
                    if args.frame_interval is not None else
                    check_clip_fps(args.clip_fps, '--clip-fps')
                    if args.clip_fps is not None else None)
        ckpt = load_checkpoint(args.src, labels=args.labels, **overrides)
        clip_fps = clip_fps or ckpt.clip_fps
        out = save_checkpoint(args.dst, ckpt.model, ckpt.labels, mean=args.mean or ckpt.mean,
                              std=args.std or ckpt.std, source=ckpt.source, clip_fps=clip_fps)
    except CheckpointError as exc:
        print(f'timesformer_convert: error: {exc}', file=sys.stderr)
        return 2
    except OSError as exc:
        print(f'timesformer_convert: error: cannot write {args.dst}: {exc.strerror or exc}',
              file=sys.stderr)
        return 2
    cfg = ckpt.config
    rate = f'{clip_fps:g} fps clips' if clip_fps else 'clip rate unknown: give --clip-fps'
    print(f'wrote {out} ({cfg.attention_type}, {cfg.num_frames}x{cfg.img_size}, '
          f'{cfg.num_classes} classes, {rate})')
    return 0


if __name__ == '__main__':
    sys.exit(convert_main())
