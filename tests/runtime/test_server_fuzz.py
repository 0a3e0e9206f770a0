"""Fuzz: 10,000+ random and mutated frames (seeded) against a real server; it must stay whole.

No crash, every connection cleaned up, no task, thread or memory left behind,
and a well-formed client served exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import threading
import tracemalloc

from wyoming.audio import AudioStop

from model_runtime import constants as c
from server_support import Client, burst, custom, listen, running_server, to_pcm16

SEED = 20261125
FRAMES = 10_000
CONNECTIONS_AT_ONCE = 4

EVENT_TYPES = ["describe", "ping", "detect", "audio-start", "audio-chunk", "audio-stop",
               c.WYOMING_LISTEN, c.WYOMING_INSTRUCT, "transcribe", "run-satellite", "", "info"]
JUNK_VALUES = [None, True, -1, 0, 1, 3, 7, 16000, 10**12, 1.5, "16000", "", [], {}, [1, "a"], "okay_nabu",
               c.MODEL_DECISION_NAME]


def valid_frame(rng: random.Random) -> bytes:
    kind = rng.choice(["describe", "ping", "detect", "listen", "start", "chunk", "chunk", "chunk", "stop", "instruct"])
    payload = b""
    if kind == "start" or kind == "chunk":
        fmt = {"rate": rng.choice([8000, 16000, 22050, 44100, 48000]), "width": rng.choice([1, 2, 3, 4]),
               "channels": rng.choice([1, 2, 3])}
        if kind == "chunk":
            frames = rng.randint(0, 800)
            payload = rng.randbytes(frames * fmt["width"] * fmt["channels"])
        header = {"type": "audio-start" if kind == "start" else "audio-chunk", "data": fmt}
    else:
        header = {
            "describe": {"type": "describe"},
            "ping": {"type": "ping", "data": {"text": "x"}},
            "detect": {"type": "detect", "data": {"names": rng.choice([None, [c.MODEL_DECISION_NAME]])}},
            "listen": {"type": c.WYOMING_LISTEN, "data": {"room": "fuzz"}},
            "stop": {"type": "audio-stop"},
            "instruct": {"type": c.WYOMING_INSTRUCT, "data": {"text": "transcribe"}},
        }[kind]
    if payload:
        header["payload_length"] = len(payload)
    if rng.random() < 0.3 and "data" in header:  # data sent the other wire way: as data bytes
        data = json.dumps(header.pop("data")).encode()
        header["data_length"] = len(data)
        return json.dumps(header).encode() + b"\n" + data + payload
    return json.dumps(header).encode() + b"\n" + payload


def mutated_frame(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.25:  # structured nonsense: a real type, junk fields
        header = {"type": rng.choice(EVENT_TYPES),
                  "data": {k: rng.choice(JUNK_VALUES) for k in rng.sample(["rate", "width", "channels", "names",
                                                                             "room", "text", "timestamp"], 3)}}
        if rng.random() < 0.3:
            header["payload_length"] = rng.choice([0, 1, 2, 5, 64])
        raw = json.dumps(header).encode() + b"\n"
        return raw + rng.randbytes(header.get("payload_length", 0))
    if roll < 0.45:  # random bytes, ending a line
        return rng.randbytes(rng.randint(0, 200)).replace(b"\n", b"") + b"\n"
    raw = bytearray(valid_frame(rng))
    if roll < 0.75:  # flip a few bytes
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    elif roll < 0.85:  # truncate
        del raw[rng.randrange(len(raw)):]
    elif roll < 0.95:  # duplicate a slice
        i = rng.randrange(len(raw))
        raw[i:i] = raw[i:i + rng.randint(1, 40)]
    else:  # an over-long header line
        raw = bytearray(b'{"type": "' + b"a" * 70_000 + b'"}\n')
    return bytes(raw)


async def fuzz_connections(server, frames: list[bytes], rng: random.Random) -> int:
    """Send the frames over a series of connections, 50 to 200 frames each (a frame that
    declares a wrong length swallows the rest of its connection); returns the errors seen."""
    errors = 0
    pending = list(frames)
    while pending:
        batch = [pending.pop() for _ in range(min(len(pending), rng.randint(50, 200)))]
        client = await Client.connect(server)

        async def read_all() -> int:
            seen = 0
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                while (event := await client.read(10)) is not None:
                    seen += event.type == "error"
            return seen

        reader = asyncio.create_task(read_all())
        try:
            for raw in batch:
                if reader.done():  # cut off (too many errors)
                    break
                await client.send_raw(raw)
            if not reader.done():
                client.writer.write_eof()  # the server answers all it got, then hangs up
        except (ConnectionError, OSError):
            pass
        errors += await reader
        await client.close()
    return errors


async def run_fuzz(server, rng: random.Random, count: int) -> int:
    frames = [valid_frame(rng) if rng.random() < 0.4 else mutated_frame(rng) for _ in range(count)]
    share = len(frames) // CONNECTIONS_AT_ONCE
    parts = [frames[i * share:(i + 1) * share] for i in range(CONNECTIONS_AT_ONCE)]
    parts[-1] += frames[CONNECTIONS_AT_ONCE * share:]
    rngs = [random.Random(rng.random()) for _ in parts]
    return sum(await asyncio.gather(*(fuzz_connections(server, part, r) for part, r in zip(parts, rngs))))


async def served_correctly(server) -> None:
    client = await Client.connect(server)
    await client.send(listen("after-fuzz"))
    await client.stream(to_pcm16(burst(1.5, loud_at=1.0)), stop=False)
    await client.send(AudioStop().event())
    events = await client.flushed()
    sounds = custom(events, c.EVENT_SOUND)
    assert [e.type for e in events if e.type == "error"] == []
    assert len(sounds) == 2 and abs(sounds[0].data["start"] - 1.0) < 0.05
    await client.close()


async def test_fuzzed_frames_leave_the_server_whole():
    # pytest keeps every log record it captures: thousands of error lines would read as a leak.
    logging.getLogger("model_runtime.server").setLevel(logging.ERROR)
    try:
        await _fuzz()
    finally:
        logging.getLogger("model_runtime.server").setLevel(logging.NOTSET)


async def _fuzz() -> None:
    rng = random.Random(SEED)
    async with running_server(max_streams=8) as server:
        await run_fuzz(server, rng, 500)  # warm up: caches, thread pool, imports
        await _settle(server)
        gc.collect()
        tasks_before = len(asyncio.all_tasks())
        tracemalloc.start()
        memory_before = tracemalloc.get_traced_memory()[0]

        errors = await asyncio.wait_for(run_fuzz(server, rng, FRAMES), timeout=120)

        await _settle(server)
        gc.collect()
        memory_after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(f"fuzz: {FRAMES} frames, {errors} errors returned, "
              f"{(memory_after - memory_before) / 1e3:.1f} kB kept, {threading.active_count()} threads")
        assert errors > FRAMES // 10, "the fuzz must reach the error paths"
        assert len(asyncio.all_tasks()) == tasks_before
        assert memory_after - memory_before < 2_000_000, f"{memory_after - memory_before} bytes kept"
        assert threading.active_count() <= 8 + 4  # the engine pool is capped at max_streams
        await served_correctly(server)


async def _settle(server, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while server.handlers or server.open_streams:
        assert asyncio.get_running_loop().time() < deadline, "connections were not cleaned up"
        await asyncio.sleep(0.02)
