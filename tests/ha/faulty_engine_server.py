"""A real Wyoming server (lite engine) with a fault injected into its engine, for the HA tests.

Run with the runtime's Python: `python faulty_engine_server.py PORT MODE`. MODE:
- `fail-once`: the engine raises once, on the first loud audio it is fed (the server then
  reports `engine-failed` and ignores that stream until its next `audio-start`);
- `slow`: the engine takes twice the audio's duration for each feed, so a live room falls
  behind and the server skips its backlog (`audio-skipped`, with a 1 s backlog cap).
A healthy server shows neither on demand.
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np

from model_runtime.constants import SAMPLE_RATE
from model_runtime.engine import EngineOptions
from model_runtime.lite.engine import LiteEngine, LiteStream
from model_runtime.server.app import WyomingServer

LOUD = 0.1  # full scale = 1


class FailsOnce(LiteEngine):
    failed = False

    def open_stream(self) -> LiteStream:
        stream = super().open_stream()
        feed = stream.feed

        def feed_or_fail(audio):
            if not FailsOnce.failed and np.abs(audio).max(initial=0) > LOUD:
                FailsOnce.failed = True
                raise RuntimeError("a fault the test injected")
            return feed(audio)

        stream.feed = feed_or_fail
        return stream


class HalfSpeed(LiteEngine):
    def open_stream(self) -> LiteStream:
        stream = super().open_stream()
        feed = stream.feed

        def slow_feed(audio):
            time.sleep(2 * len(audio) / SAMPLE_RATE)
            return feed(audio)

        stream.feed = slow_feed
        return stream


async def serve(port: int, mode: str) -> None:
    if mode == "fail-once":
        server = WyomingServer(FailsOnce(EngineOptions()))
    elif mode == "slow":
        server = WyomingServer(HalfSpeed(EngineOptions()), max_backlog_seconds=1.0)
    else:
        raise SystemExit(f"unknown mode {mode!r}: fail-once or slow")
    await server.start(f"tcp://127.0.0.1:{port}")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
