"""A real Wyoming server (lite engine) whose engine raises once: on the first loud audio it is fed.

Run with the runtime's Python (`python failing_engine_server.py PORT`); the HA tests use it to
see a room recover from an engine failure on its stream (`engine-failed`), which a healthy
server never shows on demand.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

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


async def serve(port: int) -> None:
    server = WyomingServer(FailsOnce(EngineOptions()))
    await server.start(f"tcp://127.0.0.1:{port}")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
