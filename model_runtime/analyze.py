"""`audio-interaction analyze FILE`: run an engine over a file as if it were a live stream."""

from __future__ import annotations

import argparse
import json
import sys

from .audio import load_audio
from .engine import add_engine_arguments, create_engine, create_safety_net, options_from_args, run_streams
from .events import Event


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="audio file: wav, flac, mp3, ogg ... any rate, width, channels")
    parser.add_argument("--format", choices=["jsonl", "text"], default="text", help="output format (default text)")
    add_engine_arguments(parser)


def format_text(event: Event) -> str:
    d = event.to_dict()
    rest = " ".join(f"{k}={v}" for k, v in d.items() if k not in ("type", "t"))
    return f"{event.t:9.2f}s  {event.type:<10} {rest}"


def main(args: argparse.Namespace) -> int:
    audio = load_audio(args.file)  # before the engine: a bad file fails fast
    options = options_from_args(args)
    engine = create_engine(options)
    engines = [engine] + [net for net in [create_safety_net(options)] if net is not None]
    streams = [each.open_stream() for each in engines]
    try:
        for event in run_streams(streams, audio):
            line = json.dumps(event.to_dict()) if args.format == "jsonl" else format_text(event)
            print(line, flush=True)
    finally:
        for stream in streams:
            stream.close()
        for each in engines:
            each.close()
    return 0
