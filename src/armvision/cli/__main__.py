"""`python -m armvision.cli ...` is the `armvision` command."""
import sys

from . import main

sys.exit(main())
