"""`python -m rlsuite ...` is the `rlsuite` command (torchrun starts it so: torchrun ... -m rlsuite train dt ...)."""
from rlsuite.cli import main

raise SystemExit(main())
