"""``python -m wasmplug``: the command line."""

import sys

from wasmplug._cli.main import main

sys.exit(main())
