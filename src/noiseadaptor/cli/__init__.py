"""Command line: one module per sub-command (run, train, evaluate, compare, export, inspect, check), each
with
`add_parser(commands)` and `main(args)`, and `common` for what they share. ``run`` does the whole job on the
embedded data set; ``train`` and ``evaluate`` run the paper's recipes on real data (one YAML per table row
in recipes/, any flag overrides it)."""

from __future__ import annotations

import argparse
import os
import select
import shlex
import sys
import warnings

from . import check, compare, evaluate, export, inspect, run, train
from .common import DESCRIPTION

COMMANDS = {
    "run": run,
    "train": train,
    "evaluate": evaluate,
    "compare": compare,
    "export": export,
    "inspect": inspect,
    "check": check,
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its sub-command parsers by name."""
    parser = argparse.ArgumentParser(
        prog="noiseadaptor",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, {name: command.add_parser(commands) for name, command in COMMANDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    name = f"noiseadaptor {args.command}"
    show = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"{name}: warning: {message}\n"  # one line, no source
    try:
        return COMMANDS[args.command].main(args)
    except ValueError as err:  # bad input found by the library, before any heavy work
        parser.exit(2, f"{name}: error: {_one_line(err)}\n")
    except BrokenPipeError as err:
        if not _reader_gone():  # another pipe (a worker's, a socket): a failure, not the end of the output
            parser.exit(1, f"{name}: error: {err.strerror or err}: a pipe to another process closed\n")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 128 + 13  # the reader of our output went away (`| head`): stop quietly, as Unix tools do
    except OSError as err:  # the machine refused a read or write (disk full, size limit, read-only, a lost mount)
        where = f" {err.filename}" if err.filename else ""
        parser.exit(1, f"{name}: error:{where} {err.strerror or err}; what was written before stays (--resume "
                       "continues a run), no half-written file is left\n")  # fmt: skip
    except KeyboardInterrupt:  # Ctrl-C: what was checkpointed stays; say how to go on, not where Python was
        parser.exit(130, f"{name}: interrupted; {_what_stays(args)}\n")
    finally:
        warnings.formatwarning = show


def _what_stays(args: argparse.Namespace) -> str:
    """After Ctrl-C: where the work done so far is, and the command that goes on from it."""
    out = getattr(args, "out", None)
    if args.command == "train" and out is not None:
        resume = f"noiseadaptor train --out {shlex.quote(str(out))} --resume"
        return f"the last checkpoint is in {out}; continue with: {resume}"
    if args.command in ("run", "compare") and out is not None:
        again = "the same command with --resume" if args.command == "run" else "the same command"
        return f"the finished cells are kept in {out}; continue with {again}"
    if args.command in ("train", "run", "compare"):  # --out from a recipe
        return "the checkpoints written so far are kept (--resume continues)"
    return "nothing is left half-written"


def _reader_gone() -> bool:
    """Whether standard output is a pipe whose reading end is closed."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or no file behind sys.stdout
        return False


def _one_line(err: Exception) -> str:
    """The message of `err`; for one raised in a DataLoader worker (which torch re-raises with the worker's
    whole traceback), the original message alone."""
    message = str(err)
    if message.startswith("Caught ") and "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return message
