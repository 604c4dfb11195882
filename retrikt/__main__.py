"""`python -m retrikt ...`: the command line (see `retrikt.cli.main`)."""
import sys

from .cli.main import main

sys.exit(main())
