"""The engine interface every engine implements: feed PCM, get events.

One `Engine` holds what is shared and expensive (model weights, classifiers)
and is created once per process. Each audio stream (one room, one file) gets
its own `EngineStream` from `engine.open_stream()` holding only that stream's
state, so a server can serve many rooms from one loaded model.

Audio handed to a stream is always 16 kHz mono float32 in [-1, 1] (see
`audio.py` for conversions); it may arrive in pieces of any length.
"""

from __future__ import annotations

import abc
import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from . import constants as c
from .events import Event

if TYPE_CHECKING:
    from .lite.home_phrases import HomeVocabulary


@dataclass
class EngineOptions:
    """Options shared by the CLI, the server and the add-on; each engine reads the ones it uses."""

    engine: str = c.DEFAULT_ENGINE
    # audio-interaction engine
    model: str = c.DEFAULT_MODEL_REPO
    device: str = "auto"  # auto | cpu | cuda[:N]
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    system_prompt: str = c.DEFAULT_SYSTEM_PROMPT
    max_response_tokens: int = 128
    context_seconds: float = 300.0  # sliding window of recent audio kept in the KV cache
    async_encoder: bool = False  # encoder runs ahead of the LM (upstream's FIFO mode)
    threads: int | None = None
    quantize: str = "none"  # none | int8 | int8-dynamic: int8 weights (torch's CPU ops, torchao on GPU; interaction/quantize.py)
    # Live audio this far behind: decide every other chunk (interaction/overload.py). Above what a room
    # behind by a little reaches anyway while its queued chunks go through 4 at a time (1.6 s of audio
    # plus the step): at 2 s the 3B int8 model on 2 cores, keeping up that way, was thinned needlessly
    # (131-144 of 150 chunks decided in 60 s live; at 4 s, and with no rule, all 150).
    overload_seconds: float = 4.0
    batch_rooms: int = 16  # at most this many streams share one batched model step (1 = no batching)
    cuda_graphs: bool = True  # on a GPU, model steps replay CUDA graphs (interaction/cuda_graphs.py)
    # the lite engine's alarm, loudness, speech and music detectors run beside the model (lite/safety_net.py)
    safety_net: bool = True
    # lite engine
    wake_words: list[str] = field(default_factory=lambda: ["okay_nabu"])


class EngineStream(abc.ABC):
    """The per-stream state of an engine. Not thread-safe: one caller at a time."""

    @abc.abstractmethod
    def feed(self, audio: np.ndarray) -> list[Event]:
        """Consume 16 kHz mono float32 samples; return the events they completed."""

    def instruct(self, text: str) -> list[Event]:
        """An in-stream instruction ("translate into English", "transcribe")."""
        return []

    def use_home_vocabulary(self, home: "HomeVocabulary | None") -> None:
        """The home's device and area names, which a stream that transcribes spoken requests (the
        lite engine's, after a wake word) biases its recogniser to; others have no use for them."""

    @abc.abstractmethod
    def finish(self) -> list[Event]:
        """End of stream: flush what is pending (the last partial chunk, open sounds)."""

    def finish_later(self) -> tuple[list[Event], Callable[[], list[Event]] | None]:
        """`finish()` in two parts: its events now, and a call that waits for the rest (None: no rest).

        The rest is what is computed elsewhere and only waited for, such as a request's transcript
        that the recognizer's process still decodes. A server whose streams share threads makes
        the wait on a thread of its own, so the other streams are fed meanwhile."""
        return self.finish(), None

    def close(self) -> None:
        """Free everything the stream holds."""


class Engine(abc.ABC):
    name: str
    # How many threads the server lets call its streams at once; None: one per open stream (the
    # model engine gathers the rooms whose threads wait together into one batched step).
    feed_threads: int | None = None

    @abc.abstractmethod
    def open_stream(self) -> EngineStream: ...

    def wake_words(self) -> list[str]:
        """Names a wake-word client may ask for; a detection carries one of them."""
        return []

    def close(self) -> None:
        pass


def create_engine(options: EngineOptions) -> Engine:
    """Build the engine named in `options` (imports lazily: lite never loads torch)."""
    if options.engine == c.ENGINE_LITE:
        from .lite import LiteEngine

        return LiteEngine(options)
    if options.engine == c.ENGINE_AUDIO_INTERACTION:
        from .interaction.engine import InteractionEngine

        return InteractionEngine(options)
    raise ValueError(f"unknown engine {options.engine!r}; choose one of: {', '.join(c.ENGINES)}")


def create_safety_net(options: EngineOptions, own_process: bool = False) -> Engine | None:
    """The detectors that run beside a model engine on the same audio, or None (the lite engine
    runs them itself; `--no-safety-net` turns them off). `own_process`: in a child process, as
    the server runs them (away from the model's GIL)."""
    if options.engine == c.ENGINE_LITE or not options.safety_net:
        return None
    from .lite.safety_net import SafetyNet, SafetyNetProcess

    return SafetyNetProcess() if own_process else SafetyNet()


def run_stream(stream: EngineStream, audio: np.ndarray, piece_samples: int = 1_600) -> Iterable[Event]:
    """Feed a whole signal in live-sized pieces (0.1 s by default) and yield events as they come."""
    return run_streams([stream], audio, piece_samples)


def run_streams(streams: list[EngineStream], audio: np.ndarray, piece_samples: int = 1_600) -> Iterable[Event]:
    """`run_stream` for streams that hear the same audio (an engine and its safety net): each
    piece's events from all of them, in time order."""
    for start in range(0, len(audio), piece_samples):
        yield from _in_time_order([stream.feed(audio[start : start + piece_samples]) for stream in streams])
    yield from _in_time_order([stream.finish() for stream in streams])


def _in_time_order(found: list[list[Event]]) -> list[Event]:
    if len(found) == 1:
        return found[0]  # one stream's own order, as it gave it
    return sorted((event for events in found for event in events), key=lambda e: e.t)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EngineOptions()
    g = parser.add_argument_group("engine")
    g.add_argument("--engine", choices=c.ENGINES, default=defaults.engine, help="default: %(default)s")
    g.add_argument("--model", default=defaults.model, help="checkpoint folder or HF repo id (audio-interaction engine)")
    g.add_argument("--device", default=defaults.device, help="auto, cpu or cuda[:N]")
    g.add_argument("--dtype", default=defaults.dtype, choices=["auto", "float32", "bfloat16", "float16"])
    g.add_argument("--system-prompt", default=defaults.system_prompt)
    g.add_argument("--max-response-tokens", type=int, default=defaults.max_response_tokens)
    g.add_argument("--context-seconds", type=float, default=defaults.context_seconds,
                   help="seconds of recent audio kept in the model's context (default %(default)s)")
    g.add_argument("--async-encoder", action="store_true", help="encode audio ahead of the LM (FIFO mode)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    g.add_argument("--quantize", default=defaults.quantize, choices=c.QUANTIZE_MODES,
                   help="int8 weights: int8 = weight-only (half of bf16's memory), int8-dynamic = int8 activations "
                        "too, the fastest on CPU (also the audio encoder): default %(default)s")
    g.add_argument("--overload-seconds", type=float, default=defaults.overload_seconds,
                   help="a live stream this many seconds behind decides every other 0.4 s chunk until it catches up, "
                        "announced as an 'overloaded' error event (0 = never; default %(default)s)")
    g.add_argument("--batch-rooms", type=int, default=defaults.batch_rooms,
                   help="streams that share one batched model step, at most (1 = no batching; default %(default)s)")
    g.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="on a GPU, launch every kernel of each model step instead of replaying CUDA graphs "
                        "(slower; for comparison or a driver that fails to capture)")
    g.add_argument("--no-safety-net", dest="safety_net", action="store_false",
                   help="audio-interaction engine: do not run the lite engine's alarm, loud-noise, speech and music "
                        "detectors beside the model (by default they hear the same audio in a lane of their own, "
                        "so a smoke or CO alarm is reported even when the model stays silent, falls behind or fails)")
    g.add_argument("--wake-word", dest="wake_words", action="append", default=None,
                   help="lite engine wake word (repeatable; default okay_nabu)")


def options_from_args(args: argparse.Namespace) -> EngineOptions:
    defaults = EngineOptions()
    return EngineOptions(
        engine=args.engine,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        system_prompt=args.system_prompt,
        max_response_tokens=args.max_response_tokens,
        context_seconds=args.context_seconds,
        async_encoder=args.async_encoder,
        threads=args.threads,
        quantize=args.quantize,
        overload_seconds=args.overload_seconds,
        batch_rooms=args.batch_rooms,
        cuda_graphs=args.cuda_graphs,
        safety_net=args.safety_net,
        wake_words=args.wake_words or defaults.wake_words,
    )
