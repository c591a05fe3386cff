"""`python -m timesformer_ros.bags`: the `timesformer_bag` command line."""

import sys

from .cli import main

sys.exit(main())
