import sys

from rlsuite.cli import main

sys.exit(main())
