"""The `audio-interaction` command line.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`main(args) -> int`; this file only wires them up and turns `UserError` into
one clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .errors import UserError

# (command, module, help) in the order a user meets them.
COMMANDS = (
    ("analyze", "model_runtime.analyze", "print the events an engine hears in an audio file"),
    ("serve", "model_runtime.server.app", "run the Wyoming server (wake word detection + audio-interaction events)"),
    ("bench", "model_runtime.bench", "print speed and memory figures (never asserted)"),
    ("make-tiny-checkpoint", "model_runtime.interaction.tiny", "write a tiny rigged checkpoint in the release layout (for tests)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audio-interaction", description="Always-listening audio model runtime.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch loads (it is imported only when a command runs): OpenMP worker
    # threads that sleep when idle instead of spinning. An always-on server shares
    # its cores with Home Assistant; spinning threads cost a quiet stream 4-10x its
    # CPU on a busy 2-core machine (measured 55-141 vs 14 ms per chunk). Set the
    # variable yourself to override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"audio-interaction: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
