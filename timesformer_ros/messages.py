"""Stamps and the messages the package builds: one owner, for both kinds of message class.

The node, the camera and bag replay build rclpy messages; the bag tools build rosbags
messages. Both take every field as a keyword argument, so one `MessageTypes` per library
builds either from the same code: `rclpy_types()` and `bag_types(store)`. Stamps travel as
integer nanoseconds inside the package and as `{sec, nanosec}` in JSON. No rclpy import here
(it happens inside `rclpy_types`).
"""

from __future__ import annotations

import array
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

NS_PER_S = 1_000_000_000
IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
STRING = 'std_msgs/msg/String'
HEADER = 'std_msgs/msg/Header'
TIME = 'builtin_interfaces/msg/Time'
CLASSIFICATION = 'vision_msgs/msg/Classification'
OBJECT_HYPOTHESIS = 'vision_msgs/msg/ObjectHypothesis'
LABEL_INFO = 'vision_msgs/msg/LabelInfo'
VISION_CLASS = 'vision_msgs/msg/VisionClass'
POINT_2D = 'vision_msgs/msg/Point2D'
POSE_2D = 'vision_msgs/msg/Pose2D'
BOUNDING_BOX_2D = 'vision_msgs/msg/BoundingBox2D'
HYPOTHESIS_WITH_POSE = 'vision_msgs/msg/ObjectHypothesisWithPose'
DETECTION_2D = 'vision_msgs/msg/Detection2D'
# Dependencies first: rosbags registers them in this order.
VISION_TYPES = (OBJECT_HYPOTHESIS, CLASSIFICATION, VISION_CLASS, LABEL_INFO, POINT_2D, POSE_2D,
                BOUNDING_BOX_2D, HYPOTHESIS_WITH_POSE, DETECTION_2D)
UNLABELED = 65535     # VisionClass: the largest class id names the "unlabeled" class


def stamp_ns(header) -> int:
    """Nanoseconds of a message header's stamp (rclpy or rosbags)."""
    return int(header.stamp.sec) * NS_PER_S + int(header.stamp.nanosec)


def split_ns(ns: int) -> tuple:
    """(sec, nanosec) of a stamp in nanoseconds."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec


def stamp_dict(ns: int) -> dict:
    """Return a stamp as it appears in the JSON topics: `{"sec", "nanosec"}`."""
    sec, nanosec = split_ns(ns)
    return {'sec': sec, 'nanosec': nanosec}


def dict_ns(stamp: dict) -> int:
    """Nanoseconds of a JSON stamp `{"sec", "nanosec"}`."""
    return int(stamp['sec']) * NS_PER_S + int(stamp['nanosec'])


def is_compressed(msg) -> bool:
    """Whether an image message is a CompressedImage (it has `format`, not `encoding`)."""
    return hasattr(msg, 'format') and not hasattr(msg, 'encoding')


class MessageTypes:
    """Builds messages of one library.

    `classes` maps a ROS type name to its class, `data` turns a numpy array into what that
    library's uint8[] fields take.
    """

    def __init__(self, classes: Callable[[str], type], data: Callable[[np.ndarray], Any],
                 floats: Callable[[np.ndarray], Any] = lambda a: a.astype(np.float64)):
        self.classes = classes
        self.to_data = data
        self.to_floats = floats      # float64[N] fields

    def header(self, ns: int, frame_id: str):
        """Return a std_msgs/Header stamped `ns`."""
        sec, nanosec = split_ns(ns)
        return self.classes(HEADER)(stamp=self.classes(TIME)(sec=sec, nanosec=nanosec),
                                    frame_id=frame_id)

    def image(self, header, pixels: np.ndarray, encoding: str):
        """Return a sensor_msgs/Image of an (H, W) or (H, W, C) array.

        The image has packed rows and is little endian.
        """
        pixels = np.ascontiguousarray(pixels)
        if pixels.dtype.byteorder == '>':
            pixels = pixels.astype(pixels.dtype.newbyteorder('<'))
        height, width = pixels.shape[:2]
        return self.classes(IMAGE)(
            header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
            step=pixels[0].nbytes if height else 0, data=self.to_data(pixels))

    def string(self, text: str):
        """Return a std_msgs/String."""
        return self.classes(STRING)(data=text)

    def classification(self, header, results: Sequence[tuple]):
        """Return a vision_msgs/Classification of (class_id, score) pairs, best first."""
        hypothesis = self.classes(OBJECT_HYPOTHESIS)
        return self.classes(CLASSIFICATION)(
            header=header, results=[hypothesis(class_id=str(c), score=float(s))
                                    for c, s in results])

    def detection(self, header, box: Sequence[float], results: Sequence[tuple]):
        """Return a vision_msgs/Detection2D of a box and (class_id, score) pairs, best first.

        `box` is (x_min, y_min, x_max, y_max) in image pixels; the message holds its centre and
        size. The hypotheses' poses stay zero (a 2D detection has none).
        """
        x0, y0, x1, y1 = (float(v) for v in box)
        centre = self.classes(POSE_2D)(
            position=self.classes(POINT_2D)(x=(x0 + x1) / 2, y=(y0 + y1) / 2), theta=0.0)
        hypothesis, with_pose = self.classes(OBJECT_HYPOTHESIS), self.classes(
            HYPOTHESIS_WITH_POSE)
        return self.classes(DETECTION_2D)(
            header=header, id='',
            bbox=self.classes(BOUNDING_BOX_2D)(center=centre, size_x=x1 - x0, size_y=y1 - y0),
            results=[with_pose(hypothesis=hypothesis(class_id=str(c), score=float(s)),
                               pose=self._zero_pose()) for c, s in results])

    def _zero_pose(self):
        """Return a geometry_msgs/PoseWithCovariance at the origin, identity orientation."""
        geometry = 'geometry_msgs/msg/'
        pose = self.classes(geometry + 'Pose')(
            position=self.classes(geometry + 'Point')(x=0.0, y=0.0, z=0.0),
            orientation=self.classes(geometry + 'Quaternion')(x=0.0, y=0.0, z=0.0, w=1.0))
        return self.classes(geometry + 'PoseWithCovariance')(
            pose=pose, covariance=self.to_floats(np.zeros(36)))

    def label_info(self, header, labels: Sequence[str], threshold: float):
        """Return a vision_msgs/LabelInfo: class ids 0..n-1 and their names, the threshold."""
        if len(labels) >= UNLABELED:
            raise ValueError(f'{len(labels)} classes: vision_msgs class ids are uint16 and '
                             f'{UNLABELED} means unlabeled')
        vision_class = self.classes(VISION_CLASS)
        return self.classes(LABEL_INFO)(
            header=header, threshold=float(threshold),
            class_map=[vision_class(class_id=i, class_name=n) for i, n in enumerate(labels)])


def rclpy_types() -> MessageTypes:
    """Message classes of rclpy (the ROS client library's generated Python types)."""
    import geometry_msgs.msg as geometry
    import vision_msgs.msg as vision
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header, String
    classes = {IMAGE: Image, COMPRESSED_IMAGE: CompressedImage, STRING: String,
               HEADER: Header, TIME: Time}
    classes.update({name: getattr(vision, name.rsplit('/', 1)[1]) for name in VISION_TYPES})
    classes.update({f'geometry_msgs/msg/{name}': getattr(geometry, name)
                    for name in ('Point', 'Quaternion', 'Pose', 'PoseWithCovariance')})
    # array.array('B') is the type rclpy stores uint8[] in: assigning one skips its
    # per-element check (0.6 ms instead of 1.7 ms for a 640x480 rgb8 frame).
    return MessageTypes(classes.__getitem__, lambda a: array.array('B', a.tobytes()),
                        lambda a: [float(v) for v in a])


def bag_types(store) -> MessageTypes:
    """Message classes of a rosbags type store (`register_vision_types` adds vision_msgs)."""
    return MessageTypes(store.types.__getitem__, lambda a: a.view(np.uint8).reshape(-1))


def vision_definition_dirs() -> list:
    """Where vision_msgs' .msg files may be: share/vision_msgs/msg of each ROS prefix.

    The prefixes of the ament index (AMENT_PREFIX_PATH: a ROS install, a colcon workspace), then
    the interpreter's own prefix (the development .venv, where `make` builds them from
    dev/interfaces). Installed code never looks for a source checkout.
    """
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    return [Path(p) / 'share' / 'vision_msgs' / 'msg' for p in [*prefixes, sys.prefix]]


def register_vision_types(store, folders: Optional[Sequence[Path]] = None) -> Path:
    """Register the vision_msgs types in a rosbags type store; return the directory used.

    The definitions are read from the first of `folders` (default `vision_definition_dirs`)
    that has them all, so bags are written with the same fields the node publishes.
    """
    from rosbags.typesys import get_types_from_msg
    names = [t.rsplit('/', 1)[1] for t in VISION_TYPES]
    for folder in folders or vision_definition_dirs():
        if all((folder / f'{name}.msg').is_file() for name in names):
            types = {}
            for typename, name in zip(VISION_TYPES, names):
                types.update(get_types_from_msg((folder / f'{name}.msg').read_text(), typename))
            store.register(types)
            return folder
    raise FileNotFoundError('vision_msgs message definitions not found (looked in '
                            f'{", ".join(map(str, vision_definition_dirs()))}): install '
                            'vision_msgs (ros-<distro>-vision-msgs), or run make')


def convert_image(msg, types: MessageTypes):
    """Convert an Image or CompressedImage message of one library to another library's.

    It becomes the same message of the other library (replaying a bag's frames with rclpy).
    """
    data = np.asarray(msg.data, dtype=np.uint8)
    header = types.header(stamp_ns(msg.header), msg.header.frame_id)
    if is_compressed(msg):
        return types.classes(COMPRESSED_IMAGE)(header=header, format=msg.format,
                                               data=types.to_data(data))
    return types.classes(IMAGE)(header=header, height=int(msg.height), width=int(msg.width),
                                encoding=msg.encoding, is_bigendian=int(msg.is_bigendian),
                                step=int(msg.step), data=types.to_data(data))
