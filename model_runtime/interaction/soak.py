"""`audio-interaction bench soak`: 24 h of simulated audio through the Wyoming server (printed, never asserted).

The real server (in this process, on a localhost TCP port) serves the
audio-interaction engine on the rigged tiny checkpoint (built in a temporary
folder, or `--model`). One client listens (`audio-interaction-listen`) and
streams `--hours` of audio on an accelerated clock: as fast as the engine
decides, with at most `--in-flight-seconds` of audio sent ahead of the last
decision (below the server's backlog cap, so nothing is skipped). The audio is
quiet noise with the tiny model's trigger tone every `--trigger-minutes`, so the
room also speaks and replies take their share of the context.

Once per simulated hour the client stops, lets the engine drain, then sends
`--probe-chunks` single 0.4 s chunks one at a time and times each decision
(chunk sent -> the decision it completes received: front end, encoder, LM step, TCP;
the front end completes a chunk when the next one's first samples arrive). Printed
per hour: the process's RSS, the probe latency, the process CPU time per probe
chunk (server and client are in this process; unlike wall time it barely moves
when other programs share the cores), the stream's context (slots used
of its fixed capacity, rolls so far), replies and errors. At the end: memory
growth and latency drift from hour 1 to the last hour (goals: < 5 %, < 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import constants as c

FRAME_SECONDS = 2.0  # audio per Wyoming audio-chunk while soaking (fewer frames, same audio)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours of audio (default %(default)s)")
    parser.add_argument("--report-hours", type=float, default=1.0, help="simulated hours between reports")
    parser.add_argument("--model", default=None, help="checkpoint folder (default: the rigged tiny checkpoint)")
    parser.add_argument("--context-seconds", type=float, default=300.0, help="the engine's context window")
    parser.add_argument("--trigger-minutes", type=float, default=10.0, help="a trigger tone this often (0 = never)")
    parser.add_argument("--in-flight-seconds", type=float, default=4.0, help="audio sent ahead of the last decision")
    parser.add_argument("--probe-chunks", type=int, default=25, help="single chunks timed per report")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    asyncio.run(soak(args))
    return 0


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Listener:
    """Reads the server's events; `decided` = stream seconds decided so far."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.decided = 0.0
        self.replies = 0
        self.errors: dict[str, int] = {}
        self.changed = asyncio.Event()
        self.arrivals: dict[float, float] = {}  # decision t -> arrival (only while probing)
        self.probing = False

    async def run(self) -> None:
        from wyoming.event import async_read_event

        while (event := await async_read_event(self.reader)) is not None:
            if event.type == c.WYOMING_EVENT_PREFIX + c.EVENT_DECISION:
                self.decided = max(self.decided, float(event.data["t"]))
                if self.probing:
                    self.arrivals[round(float(event.data["t"]), 3)] = time.perf_counter()
            elif event.type == c.WYOMING_EVENT_PREFIX + c.EVENT_RESPONSE and event.data.get("final"):
                self.replies += 1
            elif event.type in ("error", c.WYOMING_EVENT_PREFIX + c.EVENT_ERROR):
                code = str(event.data.get("code"))
                self.errors[code] = self.errors.get(code, 0) + 1
            self.changed.set()

    async def until_decided(self, seconds: float) -> None:
        while True:
            self.changed.clear()  # before the check: an event read after it sets it again
            if self.decided >= seconds - 1e-6:
                return
            await asyncio.wait_for(self.changed.wait(), 120)


async def soak(args: argparse.Namespace) -> None:
    import torch
    from wyoming.audio import AudioChunk, AudioStart
    from wyoming.event import Event, async_write_event

    from ..engine import EngineOptions, create_engine
    from ..server import WyomingServer
    from .tiny import make_tiny_checkpoint, trigger_audio

    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(make_tiny_checkpoint(Path(tmp.name) / "tiny"))
    engine = create_engine(EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION, model=model, device="cpu",
                                         context_seconds=args.context_seconds))
    server = WyomingServer(engine, max_streams=2)
    await server.start("tcp://127.0.0.1:0")
    reader, writer = await asyncio.open_connection(*server.address)
    listener = _Listener(reader)
    reading = asyncio.create_task(listener.run())

    async def send(audio: np.ndarray) -> None:
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        await async_write_event(AudioChunk(rate=c.SAMPLE_RATE, width=2, channels=1, audio=pcm).event(), writer)

    await async_write_event(Event(c.WYOMING_LISTEN, {"room": "soak"}), writer)
    await async_write_event(AudioStart(rate=c.SAMPLE_RATE, width=2, channels=1).event(), writer)
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(int(60 * c.SAMPLE_RATE)) * 0.01).astype(np.float32)  # a minute of quiet noise
    frame = int(FRAME_SECONDS * c.SAMPLE_RATE)
    trigger_every = int(args.trigger_minutes * 60 / FRAME_SECONDS) if args.trigger_minutes > 0 else 0
    report_every = int(round(args.report_hours * 3600 / FRAME_SECONDS))
    frames = int(round(args.hours * 3600 / FRAME_SECONDS))
    print(f"# bench soak: {args.hours:g} h of audio through the server (audio-interaction, {model}), "
          f"context {args.context_seconds:g} s, {args.threads} torch thread(s), in flight <= {args.in_flight_seconds:g} s")
    sent = 0.0
    reports: list[tuple[float, float, float]] = []  # (rss MiB, probe latency p50 s, CPU s per probe chunk)
    started = time.perf_counter()
    for n in range(1, frames + 1):
        offset = (n * frame) % (len(pool) - frame)
        audio = pool[offset : offset + frame].copy()
        if trigger_every and n % trigger_every == 0:
            audio[: c.CHUNK_SAMPLES] = trigger_audio()
        await send(audio)
        sent += FRAME_SECONDS
        await listener.until_decided(sent - args.in_flight_seconds)
        if n % report_every == 0 or n == frames:
            # The log-mel front end completes a chunk once the next one's first samples are in
            # (its last frame's window reaches past the chunk): everything but the newest chunk.
            await listener.until_decided(sent - c.CHUNK_SECONDS)
            latencies = []
            listener.probing = True
            cpu_before = time.process_time()
            for _ in range(args.probe_chunks):
                await asyncio.sleep(0.05)  # an idle server, as live audio leaves it between chunks
                sent_at = time.perf_counter()
                await send(pool[: c.CHUNK_SAMPLES])
                sent = round(sent + c.CHUNK_SECONDS, 3)
                await listener.until_decided(sent - c.CHUNK_SECONDS)
                latencies.append(listener.arrivals[round(sent - c.CHUNK_SECONDS, 3)] - sent_at)
            cpu_per_chunk = (time.process_time() - cpu_before) / args.probe_chunks
            listener.probing = False
            stream = next(iter(engine.open_streams))
            context = stream.context
            rss, p50 = _rss_mib(), statistics.median(latencies)
            reports.append((rss, p50, cpu_per_chunk))
            wall = time.perf_counter() - started
            print(f"{sent / 3600:6.2f} h: RSS {rss:7.1f} MiB | decision latency p50 {p50 * 1000:6.1f} ms, max "
                  f"{max(latencies) * 1000:6.1f} ms ({len(latencies)} probes), CPU {cpu_per_chunk * 1000:5.1f} ms/chunk | context {context.length} of "
                  f"{context.capacity} slots, {context.rolls} rolls | replies {listener.replies} | errors "
                  f"{listener.errors or 0} | wall {wall:6.0f} s (x{sent / wall:.0f} real time)", flush=True)
    writer.close()
    reading.cancel()
    await server.stop()
    engine.close()
    tmp.cleanup()
    if len(reports) >= 2:
        (rss0, lat0, cpu0), (rss1, lat1, cpu1) = reports[0], reports[-1]
        print(f"memory growth, first report -> last: {100 * (rss1 / rss0 - 1):+.1f} % (goal < 5 %); "
              f"decision latency drift: {100 * (lat1 / lat0 - 1):+.1f} % wall, {100 * (cpu1 / cpu0 - 1):+.1f} % CPU time "
              f"(goal < 10 %); context bounded: the "
              f"stream's cache is preallocated at its capacity, slots used never exceed it")
