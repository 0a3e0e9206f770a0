"""`audio-interaction analyze FILE`: run an engine over a file as if it were a live stream."""

from __future__ import annotations

import argparse
import json
import sys

from .audio import load_audio
from .engine import add_engine_arguments, create_engine, options_from_args, run_stream
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
    engine = create_engine(options_from_args(args))
    stream = engine.open_stream()
    try:
        for event in run_stream(stream, audio):
            line = json.dumps(event.to_dict()) if args.format == "jsonl" else format_text(event)
            print(line, flush=True)
    finally:
        stream.close()
        engine.close()
    return 0
