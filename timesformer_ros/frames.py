"""ROS image message -> RGB array -> normalised tensor on the model's device.

`decode` turns a sensor_msgs/Image or CompressedImage (any object with the same fields: rclpy
messages, rosbags messages) into an RGB uint8 array. It checks what a driver can get wrong and
raises `FrameError` with a short `reason` (for diagnostics counters) and a message that says
what was wrong. Colour conversion is rosbags-image's (every ROS encoding it supports); this
module adds what it leaves out: row padding via `step`, size checks, float encodings, and
grayscale compressed images. cv_bridge is not needed.

`Preprocessor` resizes (short side) and centre-crops to the model's input size on the CPU,
uploads the small uint8 crop once, and normalises it on the device, so each frame is converted,
copied and normalised exactly once however many windows it belongs to.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import cv2
import numpy as np
import torch

# The limits of an accepted frame, raw or compressed: `timesformer_ros/__init__.py` says why and
# hands them to OpenCV before anything imports it.
from . import MAX_PIXELS, MAX_SIDE
from .messages import is_compressed

_FLOAT_ENCODINGS = {'32FC1': np.float32, '64FC1': np.float64}
# OpenCV-style generic names with a conventional colour meaning (as cv_bridge reads them).
_ALIASES = {'8UC1': 'mono8', '8UC3': 'bgr8', '8UC4': 'bgra8', '16UC1': 'mono16'}


class FrameError(ValueError):
    """A frame that cannot be used. `reason` is a short key for counters."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FrameKey:
    """What must stay the same between frames of one window."""

    encoding: str
    height: int
    width: int


def frame_key(msg) -> FrameKey:
    """Return the encoding and size a message claims.

    For compressed images, format and decoded size are only known after decoding, so `decode`
    returns the key it found.
    """
    return FrameKey(str(msg.encoding), int(msg.height), int(msg.width))


def _raw_bytes(msg) -> np.ndarray:
    data = msg.data
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    return np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(data: bytes) -> Optional[tuple]:
    """Return the (width, height) a PNG or JPEG header declares, None for other formats.

    Read from the header alone (PNG's IHDR chunk; JPEG's first start-of-frame segment), so
    nothing is decoded or allocated.
    """
    if data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) >= 24 and data[12:16] == b'IHDR':
        return struct.unpack('>II', data[16:24])
    if data[:2] != b'\xff\xd8':
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None                 # not a marker where one must be: not a JPEG we read
        marker = data[i + 1]
        if marker == 0xFF:              # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack('>H', data[i + 2:i + 4])[0]
        if marker in _JPEG_SOF and i + 9 <= len(data):
            height, width = struct.unpack('>HH', data[i + 5:i + 9])
            return width, height
        if marker == 0xDA:              # start of scan before any frame header
            return None
        i += 2 + length
    return None


def check_size(height: int, width: int, what: str):
    """Raise FrameError unless a `what` image of `width` x `height` is within the limits."""
    if height <= 0 or width <= 0:
        raise FrameError('empty', f'{what} image has zero size ({width}x{height})')
    if max(height, width) > MAX_SIDE or height * width > MAX_PIXELS:
        raise FrameError('too_large', f'{what} image of {width}x{height} exceeds the limits of '
                                      f'{MAX_SIDE} pixels a side and {MAX_PIXELS} pixels')


def _to_uint8(image: np.ndarray, what: str) -> np.ndarray:
    """Convert a decoded image of any depth to uint8, without a float64 copy."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return cv2.convertScaleAbs(image, alpha=1 / 257)     # rounds, saturates
    if image.dtype in (np.float32, np.float64):
        if not np.isfinite(image).all():
            raise FrameError('non_finite', f'{what} image contains NaN or inf values')
        return cv2.convertScaleAbs(np.clip(image, 0.0, 1.0), alpha=255)
    raise FrameError('unsupported_encoding', f'{what} image decodes to {image.dtype} pixels')


def _decode_compressed(msg) -> tuple:
    data = _raw_bytes(msg)
    what = f'compressed ({str(msg.format)[:40]!r})'
    if data.size == 0:
        raise FrameError('empty', f'{what} image has no data')
    size = declared_size(data[:65536].tobytes())
    if size is not None:
        check_size(size[1], size[0], f'{what} (declared in its header)')
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1]
        if 'validateInputImageSize' in detail:
            raise FrameError('too_large', f'{what} image declares more than {MAX_PIXELS} '
                                          f'pixels or {MAX_SIDE} a side') from None
        raise FrameError('decode_failed', f'{what} image ({data.size} bytes) could not be '
                                          f'decoded: {detail}') from None
    if image is None:
        raise FrameError('decode_failed',
                         f'{what} image ({data.size} bytes) could not be decoded')
    check_size(image.shape[0], image.shape[1], what)
    image = _to_uint8(image, what)
    if image.ndim == 2:
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    fmt = str(msg.format).split(';')[0].strip() or 'compressed'
    return rgb, FrameKey(fmt, rgb.shape[0], rgb.shape[1])


def _packed_rows(msg, bytes_per_pixel: int, rows: int = 0) -> np.ndarray:
    """Return the image bytes without row padding, as (rows, width * bytes_per_pixel).

    `rows` defaults to the image height.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    rows = rows or height
    row = width * bytes_per_pixel
    if step < row:
        raise FrameError('bad_step', f'{msg.encoding} image: step {step} is smaller than a row '
                                     f'of {width} pixels ({row} bytes)')
    data = _raw_bytes(msg)
    if data.size < step * rows:
        raise FrameError('short_data', f'{msg.encoding} image: data has {data.size} bytes, '
                                       f'less than step*rows = {step}*{rows} = {step * rows}')
    return data[:step * rows].reshape(rows, step)[:, :row]


def _decode_nv(msg, key: FrameKey, encoding: str) -> np.ndarray:
    """NV12/NV21: a full-resolution luma plane, then interleaved half-resolution chroma."""
    if key.height % 2 or key.width % 2:
        raise FrameError('bad_size', f'{encoding} image must have even width and height, got '
                                     f'{key.width}x{key.height}')
    yuv = np.ascontiguousarray(_packed_rows(msg, 1, rows=key.height * 3 // 2))
    code = cv2.COLOR_YUV2RGB_NV12 if encoding == 'nv12' else cv2.COLOR_YUV2RGB_NV21
    return cv2.cvtColor(yuv, code)


class _Packed:
    """A message-like view of an image with packed rows, for rosbags-image."""

    def __init__(self, encoding, height, width, data, is_bigendian):
        self.encoding, self.height, self.width = encoding, height, width
        self.data, self.is_bigendian = data, is_bigendian
        self.step = data.size // max(height, 1)


def decode(msg) -> tuple:
    """RGB uint8 (H, W, 3) and the `FrameKey` of an Image or CompressedImage message."""
    if is_compressed(msg):
        return _decode_compressed(msg)
    from rosbags.image import ImageError, message_to_cvimage
    from rosbags.image.image import to_cvtype

    key = frame_key(msg)
    encoding = _ALIASES.get(key.encoding, key.encoding)
    check_size(key.height, key.width, key.encoding)
    if encoding in _FLOAT_ENCODINGS:
        dtype = np.dtype(_FLOAT_ENCODINGS[encoding])
        rows = _packed_rows(msg, dtype.itemsize)
        dtype = dtype.newbyteorder('>' if msg.is_bigendian else '<')
        values = np.ascontiguousarray(rows).view(dtype).reshape(key.height, key.width)
        gray = _to_uint8(values.astype(values.dtype.newbyteorder('=')), key.encoding)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), key
    try:
        depth, _, _, channels = to_cvtype(encoding)
    except ImageError:
        raise FrameError('unsupported_encoding',
                         f'image encoding {key.encoding!r} is not supported') from None
    if encoding in ('nv12', 'nv21'):
        return _decode_nv(msg, key, encoding), key
    if channels == 2 and key.width % 2:   # 4:2:2 packs two pixels per chroma pair
        raise FrameError('bad_size', f'{key.encoding} image must have an even width, got '
                                     f'{key.width}')
    rows = _packed_rows(msg, depth // 8 * channels)
    packed = _Packed(encoding, key.height, key.width, np.ascontiguousarray(rows).reshape(-1),
                     bool(msg.is_bigendian))
    try:
        rgb = message_to_cvimage(packed, 'rgb8')
    except ImageError as exc:
        raise FrameError('unsupported_encoding',
                         f'image encoding {key.encoding!r} cannot be converted to RGB: {exc}') \
            from None
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise FrameError('conversion_failed', f'{key.encoding} image of {key.width}x'
                                              f'{key.height} could not be converted: {detail}') \
            from None
    return np.ascontiguousarray(rgb), key


def square_of(height: int, width: int) -> tuple:
    """Return (top, left, side): where the central square of a frame lies in it."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def centre_square(rgb: np.ndarray) -> np.ndarray:
    """Return the central square of a frame, its side the shorter side: what the model sees."""
    top, left, side = square_of(*rgb.shape[:2])
    return rgb[top:top + side, left:left + side]


def to_source(box: Sequence[float], size: int, height: int, width: int) -> tuple:
    """Map a box in the model's input pixels back into the source frame's pixels.

    `box` is (x_min, y_min, x_max, y_max) with pixel edges at 0..`size` in the `size` x `size`
    input that `resize_and_crop` made of a `width` x `height` frame (a box may reach beyond
    the input, into the parts of the frame the centre crop left out); the result is the same
    box in that frame, clipped to it (edges at 0..width, 0..height).
    """
    top, left, side = square_of(height, width)
    scale = side / size
    x0, y0, x1, y1 = (float(v) for v in box)
    x = [min(max(left + v * scale, 0.0), float(width)) for v in (x0, x1)]
    y = [min(max(top + v * scale, 0.0), float(height)) for v in (y0, y1)]
    return x[0], y[0], x[1], y[1]


class Frame(NamedTuple):
    """One preprocessed frame as a stream buffers it: the model's input and the whole frame.

    `pixels`: the normalised (3, S, S) centre crop the model takes; `thumb`: the whole frame in
    gray (H', W') float32, at the scale that makes its central square S pixels a side
    (`thumb_of`), where the region finder (`locate.motion_region`) looks for what moved,
    the parts the centre crop leaves out included.
    """

    pixels: torch.Tensor
    thumb: np.ndarray


def thumb_of(rgb: np.ndarray, size: int) -> np.ndarray:
    """Return the whole frame in gray with its shorter side `size` pixels (`Frame.thumb`)."""
    height, width = rgb.shape[:2]
    scale = size / min(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, shape, interpolation=cv2.INTER_AREA).astype(np.float32)


def resize_and_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """Return the central square of the frame (side = the shorter side) resized to size x size.

    The same as resizing the shorter side to `size` and centre-cropping, but cropping first
    is exact at the crop's edges and resizes fewer pixels.
    """
    square = centre_square(rgb)
    side = square.shape[0]
    if side == size:
        return square
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


class Normaliser:
    """uint8 (..., H, W, 3) RGB -> normalised (..., 3, H, W) in `dtype` on `device`.

    Normalised as (pixel / 255 - mean) / std per channel.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = 'cpu', dtype: torch.dtype = torch.float32):
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f'mean and std need 3 channels and std > 0, got {mean} / {std}')
        self.device = torch.device(device)
        self.dtype = dtype
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device) * 255.0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.to(self.device, torch.float32) - self.mean) / self.std
        return x.movedim(-1, -3).to(self.dtype)


class Preprocessor:
    """RGB uint8 array of any size -> normalised (3, size, size) tensor on `device`.

    Resizing and cropping run on the CPU so that only the small crop is copied to the device.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = 'cpu', dtype: torch.dtype = torch.float32):
        self.size = size
        self.normaliser = Normaliser(mean, std, device, dtype)

    def crop(self, rgb: np.ndarray) -> np.ndarray:
        """Return the resized centre crop, (size, size, 3) uint8: what `normaliser` takes."""
        return np.ascontiguousarray(resize_and_crop(rgb, self.size))

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        crop = torch.from_numpy(self.crop(rgb))
        if self.normaliser.device.type == 'cuda':
            crop = crop.pin_memory().to(self.normaliser.device, non_blocking=True)
        return self.normaliser(crop)

    def frame(self, rgb: np.ndarray) -> Frame:
        """Return what a stream buffers of a frame: the model's input and the gray whole frame."""
        return Frame(self(rgb), thumb_of(rgb, self.size))
