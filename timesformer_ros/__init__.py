"""timesformer_ros: TimeSformer video action recognition for ROS 2.

The limits of an accepted camera frame, raw or compressed, are set here, before any module of
the package imports OpenCV: a larger frame is refused ('too_large') rather than resized. It is
almost certainly a driver fault or an attack, and decoding it would take the node's memory (a
629-byte JPEG can declare 30000x30000 pixels: 2.7 GB of RGB). 2**24 pixels hold a 4096x4096
or a 12-megapixel camera frame (48 MiB as RGB). OpenCV reads its own limits once, when it is
loaded, and checks the size a compressed image declares against them before it allocates, for
every format; `frames.declared_size` checks PNG and JPEG headers first, wherever OpenCV was
loaded from. A limit already in the environment is kept.
"""

import os

__version__ = '0.1.0'

MAX_SIDE = 8192
MAX_PIXELS = 1 << 24

os.environ.setdefault('OPENCV_IO_MAX_IMAGE_PIXELS', str(MAX_PIXELS))
os.environ.setdefault('OPENCV_IO_MAX_IMAGE_WIDTH', str(MAX_SIDE))
os.environ.setdefault('OPENCV_IO_MAX_IMAGE_HEIGHT', str(MAX_SIDE))
