"""Cut the committed real-footage test set from the installed footage (README, "Real footage").

    .venv/bin/python dev/make_footage_excerpt.py

Writes test/data/footage/vtest_validation.avi: frames 635-794 of vtest.avi (16 s at 10 fps,
the end of its VALIDATION part: footage.split), resized to 320x240 and encoded with OpenCV's
MPEG-4 writer (0.6 MB); and windows.json beside it: the windows that
footage_labels.file_windows finds in that file (8 frames at 10 fps, the embedded model's),
with their labels by the labelling rule. Needs `make footage` first.
"""

import json
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timesformer_ros import footage, footage_labels  # noqa: E402

OUT = REPO / 'test' / 'data' / 'footage'
FIRST, STOP, SIZE = 105, 265, (320, 240)      # frames of the validation part, output size


def main() -> int:
    frames, fps, offset = footage.read_part('vtest.avi', 'validation')
    OUT.mkdir(parents=True, exist_ok=True)
    video = OUT / 'vtest_validation.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), fps, SIZE)
    for frame in frames[FIRST:STOP]:
        writer.write(cv2.cvtColor(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_RGB2BGR))
    writer.release()
    windows = footage_labels.file_windows(video, 8, 10.0, 48)
    record = {'source': 'vtest.avi (opencv-doc examples/data), validation part',
              'video_frames': [offset + FIRST, offset + STOP - 1], 'size': list(SIZE),
              'num_frames': 8, 'clip_fps': 10.0, 'excluded': windows.excluded,
              'windows': [{'label': label, 'frames': source['frames'], 'crop': source['crop'],
                           'speed': round(float(speed), 4), 'growth': round(float(growth), 4),
                           'size': round(float(size), 4)}
                          for label, source, speed, growth, size in zip(
                              windows.labels, windows.sources, windows.speed, windows.growth,
                              windows.size)]}
    (OUT / 'windows.json').write_text(json.dumps(record, indent=1) + '\n')
    print(f'{video}: {video.stat().st_size} bytes, {len(windows.labels)} windows')
    return 0


if __name__ == '__main__':
    sys.exit(main())
