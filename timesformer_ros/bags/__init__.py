"""Rosbag reading and writing, offline evaluation, replay (`timesformer_bag`).

    timesformer_bag topics BAG
    timesformer_bag evaluate BAG --topic /camera/image_raw [--topic /rear/image_raw ...]
                             [--checkpoint C] [--truth T]
                             [--params-file config/timesformer.yaml] [--out results.jsonl]
                             [--out-bag results_bag] [--confusion confusion.png]
    timesformer_bag evaluate BAG|DIR|GLOB ... --topic T --out-dir DIR [--address A]  (`fleet`)
    timesformer_bag play BAG --topic /camera/image_raw [--rate 1.0] [--loop] [--clock]
    timesformer_bag record-synthetic OUT [--storage sqlite3|mcap] [--seconds 20]

Bags are read with `rosbags` (rosbag2 in sqlite3 storage, ROS 1 bags) and this package's bounded
MCAP reader (MCAP files and rosbag2 in MCAP storage), so none of this needs a ROS install.
`evaluate` runs exactly the node's windowing (the same ClipBuffer, fed the same parameters file)
over the bag as fast as the engine allows, batching windows, and writes one JSON line per window
in the node's `~/window` schema. Several `--topic`s are several cameras, as the node's `cameras`
parameter serves them: each has its own windows and action decoder, their windows share batches,
and each row (and segment) carries its `camera` (`camera_name`), the bag's output topics go under
`/timesformer/CAMERA/`. Ground truth is a std_msgs/String topic (the synthetic camera's JSON
{"stamp", "label"}, or a plain label per message matched to the frame with the nearest bag time)
or a CSV of `stamp,label` (stamp in seconds or integer nanoseconds).

A bag is input from anywhere, so reading it is bounded: a message whose CDR cannot be read is
skipped and named (`BagMessage.error`, the summary's `skipped_messages`) and the rest of the bag
is read; an MCAP chunk is inflated piece by piece, never past the size it declares nor past
`MAX_CHUNK_BYTES`, and `evaluate` refuses a chunk that declares more before the model (and
torch, half a gigabyte of it) is loaded. Outputs are written under partial names and renamed
into place at the end (`write.ResultWriter` says why).

One module per concern: `base` (the error, a message, the type store), `mcap` (bounded MCAP
reading), `read` (a topic of any bag), `truth` (per frame, and segments), `intake` (a topic's
messages into the node's windows, for evaluation and training), `dataset` (training windows
cached on disk), `scoring`, `evaluate`, `write` (staged outputs, camera bags), `play`, and
`cli` (the command line, the only one that imports `fleet`; `dataset` imports its `digest`).
"""

from .base import IMAGE_TYPES, BagError, BagMessage, typestore
from .evaluate import Evaluation, camera_name, engine_values, evaluate
from .mcap import MAX_CHUNK_BYTES, check_mcap_chunks
from .play import play
from .read import check_topic, iter_messages, list_topics, open_reader, read_topic
from .scoring import accuracy, confusion_image, confusion_text, score
from .truth import read_truth
from .write import (
    EvaluationOutputs, OutputError, ResultWriter, record_synthetic, write_camera_bag,
    write_whole)

__all__ = [
    'IMAGE_TYPES', 'MAX_CHUNK_BYTES', 'BagError', 'BagMessage', 'Evaluation',
    'EvaluationOutputs', 'OutputError', 'ResultWriter', 'accuracy', 'camera_name',
    'check_mcap_chunks', 'check_topic', 'confusion_image', 'confusion_text', 'engine_values',
    'evaluate', 'iter_messages', 'list_topics', 'open_reader', 'play', 'read_topic',
    'read_truth', 'record_synthetic', 'score', 'typestore', 'write_camera_bag', 'write_whole',
]
