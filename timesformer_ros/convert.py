"""`python -m timesformer_ros.convert`: the timesformer_convert console script."""

import sys

from .checkpoints import convert_main

if __name__ == '__main__':
    sys.exit(convert_main())
