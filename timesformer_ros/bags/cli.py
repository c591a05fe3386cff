"""The `timesformer_bag` command line: topics, evaluate (one bag, or many on Ray), play, record.

Above `fleet` in the imports: the command line chooses between one bag (`evaluate`) and many
(`fleet`), and `fleet` runs `evaluate` for each, so nothing imports in a circle.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..fleet import add_arguments, main as fleet_main, wants_fleet
from . import __doc__ as package_doc
from .base import BagError
from .evaluate import Evaluation, evaluate
from .play import play
from .read import list_topics
from .scoring import confusion_text
from .truth import TruthError
from .write import EvaluationOutputs, OutputError, record_synthetic


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run `timesformer_bag` on `argv` (the process's arguments if None); return the exit code."""
    parser = argparse.ArgumentParser(prog='timesformer_bag', description=package_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    top = sub.add_parser('topics', help='list topics, types and counts')
    top.add_argument('bag', type=Path)
    ev = sub.add_parser('evaluate', help="run the node's windows and model over a bag")
    ev.add_argument('bag', type=Path, nargs='+',
                    help='a bag; several bags, directories or globs run on Ray (--out-dir)')
    ev.add_argument('--topic', required=True, action='append',
                    help='image topic; several: one camera each, batched together')
    ev.add_argument('--checkpoint',
                    help="the model: any format the node's checkpoint parameter takes (default: "
                         "the parameters file's, else the embedded motion model)")
    ev.add_argument('--params-file', type=Path, help="the node's parameters file")
    ev.add_argument('--truth', help='String topic in the bag, or a CSV of stamp,label')
    ev.add_argument('--out', type=Path, help='JSON lines, one per window (default stdout '
                                             'summary only)')
    ev.add_argument('--out-bag', type=Path, help='write the output topics to this rosbag2')
    ev.add_argument('--confusion', type=Path, help='confusion matrix PNG (with --truth)')
    ev.add_argument('--strict', action='store_true',
                    help='exit 1 when the truth matches no window (else a warning)')
    ev.add_argument('--segments', type=Path, help='JSON lines, one per completed action '
                                                  'segment (the end events of ~/events)')
    ev.add_argument('--device', default='auto',
                    help="cpu, cuda, cuda:N or auto (default: the parameters file's device)")
    ev.add_argument('--batch-size', type=int, default=8,
                    help='windows run through the model at once (default 8); the results '
                         'agree to float precision whatever it is')
    add_arguments(ev)
    pl = sub.add_parser('play', help='publish the images at the recorded pace')
    pl.add_argument('bag', type=Path)
    pl.add_argument('--topic', required=True)
    pl.add_argument('--remap', help='publish on this topic instead')
    pl.add_argument('--rate', type=float, default=1.0)
    pl.add_argument('--loop', action='store_true')
    pl.add_argument('--clock', action='store_true', help='also publish /clock (bag time)')
    pl.add_argument('--reliable', action='store_true',
                    help='reliable QoS (default: sensor data)')
    rec = sub.add_parser('record-synthetic', help='write a bag of the synthetic camera')
    rec.add_argument('out', type=Path)
    rec.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    rec.add_argument('--seconds', type=float, default=20.0)
    rec.add_argument('--fps', type=float, default=30.0)
    rec.add_argument('--seed', type=int, default=0)
    rec.add_argument('--width', type=int, default=320)
    rec.add_argument('--height', type=int, default=240)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(message)s')
    try:
        if args.command == 'topics':
            for name, (msgtype, count) in sorted(list_topics(args.bag).items()):
                print(f'{name}\t{msgtype}\t{count}')
        elif args.command == 'record-synthetic':
            count = record_synthetic(args.out, args.storage, args.seconds, args.fps,
                                     args.seed, args.width, args.height)
            print(f'wrote {args.out} ({args.storage}): {count} frames on /camera/image_raw '
                  f'and truth on /motion')
        elif args.command == 'play':
            count = play(args.bag, args.topic, args.rate, args.loop, args.clock,
                         args.reliable, args.remap)
            print(f'published {count} frames')
        elif wants_fleet(args):
            return fleet_main(args)
        else:
            summary = evaluate(
                Evaluation(args.bag[0], args.topic, args.checkpoint, args.params_file, args.truth,
                           args.device, args.batch_size),
                EvaluationOutputs(args.out, args.out_bag, args.segments, args.confusion))
            _print_summary(summary)
            if 'truth_warning' in summary:
                kind = 'error' if args.strict else 'warning'
                print(f'timesformer_bag: {kind}: {summary["truth_warning"]}', file=sys.stderr)
                return 1 if args.strict else 0
    except TruthError as exc:
        print(f'timesformer_bag: error: {exc}', file=sys.stderr)
        return 2
    except BagError as exc:
        kept = f' ({exc.summary["windows"]} windows evaluated and kept)' if exc.summary else ''
        print(f'timesformer_bag: error: {exc}{kept}', file=sys.stderr)
        return 1
    except OutputError as exc:
        print(f'timesformer_bag: error: {exc} (no output was left behind)', file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not _model_error(exc):
            raise
        print(f'timesformer_bag: error: {exc}', file=sys.stderr)
        return 2 if _model_error(exc) else 1
    return 0


def _model_error(exc: BaseException) -> bool:
    """Whether `exc` is a checkpoint or engine error: exit status 2, as the node's.

    Looked up among the loaded modules: one of them raised it, and the bag tools do not import
    torch before the bag has been checked.
    """
    kinds = [getattr(sys.modules.get(f'timesformer_ros.{module}'), name, None)
             for module, name in (('checkpoints', 'CheckpointError'), ('engine', 'EngineError'))]
    return isinstance(exc, tuple(kind for kind in kinds if kind is not None))


def _print_summary(summary: dict):
    print(f'{summary["frames"]} frames, {summary["windows"]} windows in {summary["seconds"]} s '
          f'({summary["windows_per_s"]} windows/s), {summary["model"]}, sampling '
          f'{summary["sampling"]}')
    if summary['refused']:
        print(f'refused frames: {summary["refused"]}')
    if summary['skipped']:
        print(f'skipped {summary["skipped"]} unreadable message(s) (#index in the topic):')
        for skipped in summary['skipped_messages'][:10]:
            print(f'  #{skipped["index"]} at bag time {skipped["bag_time_ns"]} ns: '
                  f'{skipped["reason"]}')
        if summary['skipped'] > 10:
            print(f'  ... and {summary["skipped"] - 10} more')
    if 'accuracy' in summary:
        print(f'accuracy {100 * summary["accuracy"]:.1f}% on {summary["scored_windows"]} '
              f'windows')
        print(confusion_text(summary['confusion']['matrix'], summary['confusion']['labels']))
    metrics = summary.get('segment_metrics')
    if metrics:
        delay = metrics['onset_delay_s']
        print(f'segments: {metrics["predicted_segments"]} predicted, '
              f'{metrics["true_segments"]} true; F1@0.1/0.25/0.5 {metrics["f1@0.1"]:.3f}/'
              f'{metrics["f1@0.25"]:.3f}/{metrics["f1@0.5"]:.3f}, edit {metrics["edit"]:.3f}, '
              f'over-/under-segmented {metrics["over_segmented"]}/'
              f'{metrics["under_segmented"]}, onset delay median {delay["median"]} s, p90 '
              f'{delay["p90"]} s')
