"""`rlsuite train | finetune | eval | collect | dataset | export | merge | sweep | runs | compare | states | list | bench`
— the command line.

One module per command group (train.py, evaluate.py, runs.py, states.py, tools.py); this one holds the
parser and the boundary that turns errors into one line and an exit code.

Every user mistake ends in one line on stderr and exit code 2; a diverged run exits 1.
The configuration keys and their help come from the config dataclasses' field docstrings.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from typing import Any, NoReturn

from rlsuite.errors import TrainingDiverged, UserError

from rlsuite.cli import collect, evaluate, finetune, merge, runs, states, tools, train
from rlsuite.cli.common import EXAMPLES, Parser
from rlsuite.cli.train import default_run_dir, train_overrides  # noqa: F401  (tests, scripts)


class Interrupted(BaseException):
    """Ctrl-C, raised by `main`'s SIGINT handler. Not a KeyboardInterrupt: one of those passing through
    C code that runs Python (a module import) makes the interpreter kill itself with SIGINT at exit,
    even after `main` handled it, instead of exiting 130."""


def _interrupt_handler(pid: int) -> Any:
    def handler(signum: int, frame: Any) -> NoReturn:
        if os.getpid() != pid:  # a forked worker (AsyncVectorEnv) inherits this handler: behave as Python does
            raise KeyboardInterrupt
        raise Interrupted()
    return handler


def main(argv: list[str] | None = None) -> int:
    previous = None
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous = signal.signal(signal.SIGINT, _interrupt_handler(os.getpid()))
    try:
        return _main(argv)
    except Exception as exc:  # Ctrl-C inside a C extension's import surfaces as its ImportError
        if not _caused_by_interrupt(exc):
            raise
        return _interrupted()
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C (train handles its own SIGINT: it checkpoints, exits 0)
        return _interrupted()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether Ctrl-C is behind `exc` (e.g. scipy's 'ImportError: initialization failed' when the
    signal lands while a compiled module initialises: the Interrupted is its cause)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _interrupted() -> int:
    """The one line and exit code 130 of an interrupted command."""
    import warnings

    # what was interrupted is torn down on exit (e.g. env workers closed mid-step): no warnings about it
    warnings.filterwarnings("ignore")
    print("rlsuite: interrupted", file=sys.stderr)
    return 130


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        # torchrun: an error every rank meets alike (rlsuite.cli.train.every_rank) is said once, by rank 0
        if not (getattr(exc, "every_rank", False) and int(os.environ.get("RANK", 0) or 0) > 0):
            print(f"rlsuite: error: {exc}", file=sys.stderr)
        else:  # give rank 0 the time to say it before torchrun stops the other ranks at this one's exit
            import time

            time.sleep(1.0)
        return 2
    except TrainingDiverged as exc:
        print(f"rlsuite: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `rlsuite bench ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path the user gave that cannot be read or written: one line, not a traceback
        print(f"rlsuite: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2


OS_HINTS = {errno.ENOTDIR: "a part of the path is a file, not a directory",
            errno.EISDIR: "give a file, not a directory",
            errno.EACCES: "choose a path you can write",
            errno.EPERM: "choose a path you can write",
            errno.EROFS: "choose a path you can write",
            errno.ENOSPC: "disk full; free some space",
            errno.EDQUOT: "free some space"}


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation, naming the path (or both paths of a rename)."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    hint = OS_HINTS.get(exc.errno)
    return (f"{where}: " if where else "") + reason + (f" ({hint})" if hint else "")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rlsuite", description="Continual and reinforcement learning research suite.",
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = parser.add_subparsers(metavar="command", parser_class=Parser)
    for add in (train.add, evaluate.add, tools.add_list, tools.add_export, runs.add_sweep, runs.add_runs,
                runs.add_compare, tools.add_bench, states.add, collect.add, finetune.add, merge.add):
        add(sub)
    return parser
