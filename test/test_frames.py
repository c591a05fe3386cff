"""Frame decoding: every encoding in the table gives the expected RGB pixels.

Bad frames raise a FrameError naming what was wrong. Real sensor_msgs messages.
"""

import resource
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
import torch

from timesformer_ros.frames import (
    MAX_PIXELS, MAX_SIDE, FrameError, FrameKey, Normaliser, Preprocessor, decode, resize_and_crop)

sensor_msgs = pytest.importorskip('sensor_msgs.msg')

H, W = 4, 6
RGB = np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)
GRAY = np.random.default_rng(8).integers(0, 256, (H, W), dtype=np.uint8)


def image(encoding, array, step=None, bigendian=False, height=H, width=W):
    msg = sensor_msgs.Image()
    msg.height, msg.width, msg.encoding = height, width, encoding
    raw = np.ascontiguousarray(array)
    row = raw.nbytes // max(height, 1)
    msg.step = step or row
    data = raw.view(np.uint8).reshape(height, row)
    if msg.step > row:
        pad = np.full((height, msg.step - row), 0xAB, np.uint8)
        data = np.concatenate([data, pad], axis=1)
    msg.is_bigendian = bigendian
    msg.data = data.tobytes()
    return msg


def compressed(fmt, rgb):
    msg = sensor_msgs.CompressedImage()
    msg.format = fmt
    ok, buf = cv2.imencode('.' + fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    msg.data = buf.tobytes()
    return msg


def uyvy_from_gray_pairs(y):
    """UYVY bytes for a gray image (U = V = 128: no colour)."""
    out = np.empty((H, W * 2), np.uint8)
    out[:, 0::2] = 128
    out[:, 1::2] = y
    return out


def bayer_rggb(colour):
    mosaic = np.empty((8, 8), np.uint8)
    mosaic[0::2, 0::2] = colour[0]
    mosaic[0::2, 1::2] = colour[1]
    mosaic[1::2, 0::2] = colour[1]
    mosaic[1::2, 1::2] = colour[2]
    return mosaic


CASES = [
    ('mono8', lambda: image('mono8', GRAY), np.repeat(GRAY[..., None], 3, -1), 0),
    ('mono16', lambda: image('mono16', GRAY.astype(np.uint16) * 257),
     np.repeat(GRAY[..., None], 3, -1), 0),
    ('mono16 big-endian', lambda: image('mono16', (GRAY.astype(np.uint16) * 257).byteswap(),
                                        bigendian=True), np.repeat(GRAY[..., None], 3, -1), 0),
    ('rgb8', lambda: image('rgb8', RGB), RGB, 0),
    ('bgr8', lambda: image('bgr8', RGB[..., ::-1]), RGB, 0),
    ('rgba8', lambda: image('rgba8', np.dstack([RGB, np.full((H, W), 9, np.uint8)])), RGB, 0),
    ('bgra8', lambda: image('bgra8', np.dstack([RGB[..., ::-1], np.full((H, W), 9, np.uint8)])),
     RGB, 0),
    # Camera YUV 4:2:2 is video range (BT.601): gray = 1.164 * (Y - 16).
    ('yuv422', lambda: image('yuv422', uyvy_from_gray_pairs(GRAY)),
     np.repeat(np.clip(np.round(1.164 * (GRAY.astype(float) - 16)), 0, 255)[..., None], 3, -1),
     1),
    ('rgb8 padded step', lambda: image('rgb8', RGB, step=W * 3 + 5), RGB, 0),
    ('mono8 padded step', lambda: image('mono8', GRAY, step=W + 3),
     np.repeat(GRAY[..., None], 3, -1), 0),
    ('32FC1', lambda: image('32FC1', GRAY.astype(np.float32) / 255.0),
     np.repeat(GRAY[..., None], 3, -1), 0),
    ('png', lambda: compressed('png', RGB), RGB, 0),
]


@pytest.mark.parametrize('name, make, expected, tolerance', CASES, ids=[c[0] for c in CASES])
def test_encodings_give_expected_rgb(name, make, expected, tolerance):
    rgb, key = decode(make())
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    assert np.abs(rgb.astype(int) - expected.astype(int)).max() <= tolerance
    assert key.height == H and key.width == W


def test_bayer_rggb8_uniform_colour():
    colour = (200, 100, 30)
    msg = image('bayer_rggb8', bayer_rggb(colour), height=8, width=8)
    rgb, _ = decode(msg)
    # Interior pixels of a uniform mosaic demosaic to the colour itself.
    assert np.abs(rgb[2:-2, 2:-2].astype(int) - np.array(colour)).max() <= 1


def test_jpeg_compressed():
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (30, 160, 220)
    rgb, key = decode(compressed('jpeg', flat))
    assert rgb.shape == (16, 16, 3)
    assert np.abs(rgb.astype(int) - flat.astype(int)).max() <= 6
    assert key == FrameKey('jpeg', 16, 16)


def test_nv12():
    y = np.full((H, W), 120, np.uint8)
    uv = np.full((H // 2, W), 128, np.uint8)
    rgb, _ = decode(image('nv12', np.concatenate([y, uv]), step=W, height=H))
    assert np.abs(rgb.astype(int) - 120).max() <= 1


@pytest.mark.parametrize('make, reason, message', [
    (lambda: image('xyz16', GRAY), 'unsupported_encoding', "encoding 'xyz16' is not supported"),
    (lambda: _short(image('rgb8', RGB)), 'short_data', 'less than step\\*rows'),
    (lambda: image('rgb8', np.zeros((0, 0, 3), np.uint8), height=0, width=0), 'empty',
     'zero size'),
    (lambda: _resized(image('mono8', GRAY), 4, 0), 'empty', 'zero size'),
    (lambda: _resized(image('mono8', GRAY), 16384, 16384), 'too_large', '16384x16384'),
    (lambda: image('rgb8', RGB, step=W * 3 - 1), 'bad_step', 'step 17 is smaller'),
    (lambda: image('32FC1', np.full((H, W), np.nan, np.float32)), 'non_finite', 'NaN or inf'),
    (lambda: _garbage_jpeg(), 'decode_failed', 'could not be decoded'),
])
def test_bad_frames_raise_clear_errors(make, reason, message):
    with pytest.raises(FrameError, match=message) as info:
        decode(make())
    assert info.value.reason == reason


def _short(msg):
    msg.data = bytes(msg.data)[:-7]
    return msg


def _resized(msg, height, width):
    msg.height, msg.width = height, width
    return msg


def _garbage_jpeg():
    msg = sensor_msgs.CompressedImage()
    msg.format = 'jpeg'
    msg.data = b'\xff\xd8 not really a jpeg'
    return msg


def test_resize_and_crop_keeps_the_centre():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = 255  # the central 480x480 square is white, the sides black
    crop = resize_and_crop(frame, 64)
    assert crop.shape == (64, 64, 3)
    assert crop.min() == 255


def test_preprocessor_normalises_with_the_checkpoint_statistics():
    pre = Preprocessor(2, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    out = pre(np.full((2, 2, 3), 255, np.uint8))
    assert out.shape == (3, 2, 2)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([1.0, 3.0, 1.0]))
    batch = Normaliser((0.45,) * 3, (0.225,) * 3)(torch.zeros(2, 4, 8, 8, 3, dtype=torch.uint8))
    assert batch.shape == (2, 4, 3, 8, 8)
    torch.testing.assert_close(batch.flatten()[0], torch.tensor(-2.0))


# -- hostile compressed images: the declared size is read before anything is decoded --------------

def png_header_bomb(width, height, depth=8, colour_type=0):
    """Return a small, well-formed PNG whose header declares `width` x `height` pixels."""
    def chunk(kind, payload):
        return (struct.pack('>I', len(payload)) + kind + payload +
                struct.pack('>I', zlib.crc32(kind + payload) & 0xFFFFFFFF))
    header = struct.pack('>IIBBBBB', width, height, depth, colour_type, 0, 0, 0)
    rows = zlib.compress(b'\x00' * (1 + width * depth // 8) * 4)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', rows) +
            chunk(b'IEND', b''))


def jpeg_header_bomb(width, height):
    """Return a 16x16 JPEG whose start-of-frame segment is patched to declare another size."""
    ok, buf = cv2.imencode('.jpg', np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.find(b'\xff\xc0')
    data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def tiff_header_bomb(width, height):
    """Return a 16x16 TIFF whose first IFD's ImageWidth and ImageLength (SHORT) are patched."""
    ok, buf = cv2.imencode('.tiff', np.zeros((16, 16), np.uint8))
    data = bytearray(buf.tobytes())
    ifd = struct.unpack('<I', data[4:8])[0]
    for k in range(struct.unpack('<H', data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack('<HH', data[entry:entry + 4])
        if tag in (256, 257):
            assert kind == 3
            data[entry + 8:entry + 10] = struct.pack('<H', width if tag == 256 else height)
    return bytes(data)


def _compressed(fmt, data):
    msg = sensor_msgs.CompressedImage(format=fmt)
    msg.data = data
    return msg


@pytest.mark.parametrize('fmt, data, declared', [
    ('jpeg', lambda: jpeg_header_bomb(30000, 30000), '30000x30000'),
    ('png', lambda: png_header_bomb(30000, 30000), '30000x30000'),
    ('png', lambda: png_header_bomb(12000, 12000, depth=16), '12000x12000'),
    ('png', lambda: png_header_bomb(8000, 8000, colour_type=2), '8000x8000'),   # < MAX_SIDE
])
def test_decompression_bombs_are_refused_from_their_header(fmt, data, declared):
    """A few hundred bytes that declare gigabytes: refused before decoding, memory untouched."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(FrameError, match=declared) as info:
        decode(_compressed(fmt, data()))
    assert info.value.reason == 'too_large'
    assert time.perf_counter() - started < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024   # KiB


def test_formats_without_a_header_check_are_bounded_by_opencv():
    """TIFF and others: OpenCV refuses the declared size before it allocates."""
    with pytest.raises(FrameError) as info:
        decode(_compressed('tiff', tiff_header_bomb(30000, 30000)))
    assert info.value.reason == 'too_large'


def test_float_and_16_bit_compressed_images():
    """Refuse NaN in a float TIFF; scale 16-bit PNGs as x / 257, rounded, without float64."""
    nan = np.full((4, 4), np.nan, np.float32)
    ok, buf = cv2.imencode('.tiff', nan)
    with pytest.raises(FrameError) as info:
        decode(_compressed('tiff', buf.tobytes()))
    assert info.value.reason == 'non_finite'
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    ok, buf = cv2.imencode('.png', ramp)
    rgb, key = decode(_compressed('png', buf.tobytes()))
    assert np.array_equal(rgb[..., 0], np.round(ramp / 257.0).astype(np.uint8))
    half = np.full((4, 4), 0.5, np.float32)
    ok, buf = cv2.imencode('.tiff', half)
    rgb, _ = decode(_compressed('tiff', buf.tobytes()))
    assert (rgb == 128).all()


def test_the_limits_are_the_same_for_raw_and_compressed_frames():
    side = 4097       # 4097 x 4097 > MAX_PIXELS, each side < MAX_SIDE
    assert side * side > MAX_PIXELS and side < MAX_SIDE
    with pytest.raises(FrameError, match='exceeds the limits') as raw:
        decode(_resized(image('mono8', GRAY), side, side))
    with pytest.raises(FrameError, match='exceeds the limits') as packed:
        decode(_compressed('png', png_header_bomb(side, side)))
    assert raw.value.reason == packed.value.reason == 'too_large'
