"""`audio-interaction bench TARGET`: speed and memory figures, printed (never asserted).

Each target lives in its own module exposing `add_arguments(parser)` and
`main(args) -> int`; add a line to BENCHMARKS when a module provides one.
"""

from __future__ import annotations

import argparse
import importlib

# (target, module, help)
BENCHMARKS: tuple[tuple[str, str, str], ...] = (
    ("model", "model_runtime.interaction.bench", "the audio-interaction loop: overhead, latency, 3B-shaped model speed"),
    ("server", "model_runtime.server_bench", "the Wyoming server: soak (frames, errors, memory) and chunk-to-event latency"),
    ("load", "model_runtime.interaction.bench_load", "the audio-interaction engine on CPU: memory (own and mapped) and time to start and to stream"),
    ("rooms", "model_runtime.interaction.bench_rooms", "batched rooms (1/4/8/16 per tick) and int8 weights on the 3B-shaped model"),
    ("soak", "model_runtime.interaction.soak", "24 h of simulated audio through the server (tiny model): memory growth, latency drift"),
    ("lite", "model_runtime.lite.bench", "the lite engine: RTF per stream, streams two cores sustain, detection figures"),
    ("assist", "model_runtime.server.asr_bench", "Assist satellites: wake word detections and the asr service's transcripts on generated speech"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    for name, module_name, help_text in BENCHMARKS:
        module = importlib.import_module(module_name)
        target = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(target)
        target.set_defaults(bench_main=module.main)


def main(args: argparse.Namespace) -> int:
    return int(args.bench_main(args) or 0)
