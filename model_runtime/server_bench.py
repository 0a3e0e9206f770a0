"""`audio-interaction bench server`: soak and latency figures of the Wyoming server (printed, never asserted).

The server runs as its own process (`serve`, as users run it); the clients run
here. Two parts:

- soak: `--soak-clients` clients at once, each connecting again and again:
  complete wake-word streams, custom-event streams in other formats, streams
  dropped mid-stream, and bad frames, until `--soak-frames` frames were sent.
  Prints frames sent, streams completed/dropped, errors returned (by code),
  and the server's memory (RSS) before and after, and its peak, per round
  (`--soak-rounds` on the same server: a leak grows every round).
- latency: 1 and 16 (`--latency-streams`) concurrent streams sending 16 kHz
  audio in real time, 10 ms chunks (as Home Assistant does), a loud burst every
  second. For each event, latency = when it arrived - when the chunk holding
  its time `t` was sent (so: chunk received -> event sent, plus localhost
  transit). Prints p50/p95/max per stream count.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.wake import Detect

from . import constants as c
from .memory import process_memory_kb

CHUNK_MS = 10
RATE = 16_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak-frames", type=int, default=100_000, help="frames to send in the soak (default %(default)s)")
    parser.add_argument("--soak-clients", type=int, default=50, help="clients at once in the soak (default %(default)s)")
    parser.add_argument("--soak-rounds", type=int, default=2,
                        help="soak rounds on the same server: memory that grows in every round is a leak, "
                             "growth in the first only is warm-up (default %(default)s)")
    parser.add_argument("--latency-streams", default="1,16", help="stream counts to measure latency for (default %(default)s)")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="audio per latency run (default %(default)s)")
    parser.add_argument("--server-args", default="--engine lite", help="extra `serve` arguments (default %(default)r)")
    parser.add_argument("--skip-soak", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--seed", type=int, default=1)


def main(args: argparse.Namespace) -> int:
    streams = [int(n) for n in args.latency_streams.split(",") if n.strip()]
    # Room for each client's new stream while the server still drains its previous connection.
    with _server(args.server_args, max_streams=2 * max([args.soak_clients, *streams])) as (port, pid):
        if not args.skip_soak:
            rng = random.Random(args.seed)
            for round_ in range(1, args.soak_rounds + 1):
                print(f"soak round {round_} of {args.soak_rounds}:")
                asyncio.run(_soak(port, pid, args.soak_frames, args.soak_clients, rng))
        if not args.skip_latency:
            for n in streams:
                asyncio.run(_latency(port, pid, n, args.latency_seconds))
    return 0


# --- the server process ------------------------------------------------------
@contextlib.contextmanager
def _server(extra: str, max_streams: int):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "model_runtime", "serve", "--uri", f"tcp://127.0.0.1:{port}",
           "--max-streams", str(max_streams), *shlex.split(extra)]
    log = open(Path("/tmp") / f"audio-interaction-bench-{port}.log", "w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while True:
            log.seek(0)
            text = log.read()
            # (with a safety net the server listens while its model loads: measure the loaded model)
            if "serving tcp://" in text and ("loading the" not in text or "engine is ready after" in text):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"server did not start:\n{log.read()}")
            time.sleep(0.1)
        print(f"server: {' '.join(cmd[3:])} (pid {proc.pid}, log {log.name})")
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process and its living children (the safety net's process) have used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    return own + sum(_cpu_seconds(child) for child in children)


# --- soak --------------------------------------------------------------------
async def _soak(port: int, pid: int, total_frames: int, clients: int, rng: random.Random) -> None:
    stats = collections.Counter()
    errors = collections.Counter()
    await _one_stream(port, stats, errors, rng, "complete")  # warm up before measuring
    before = process_memory_kb(pid)
    started = time.monotonic()

    async def client_loop(seed: float) -> None:
        local = random.Random(seed)
        while stats["frames"] < total_frames:
            kind = local.choices(["complete", "listen", "drop", "bad"], weights=[4, 3, 3, 1])[0]
            await _one_stream(port, stats, errors, local, kind)

    await asyncio.gather(*(client_loop(rng.random()) for _ in range(clients)))
    elapsed = time.monotonic() - started
    await asyncio.sleep(3.0)  # let the server close the last streams and return their memory (2 s later)
    after = process_memory_kb(pid)
    print(f"  {stats['frames']} frames sent by {clients} clients at once in {elapsed:.1f} s "
          f"({stats['frames'] / elapsed:.0f} frames/s, {stats['audio_seconds']:.0f} s of audio)")
    print(f"  {stats['connections']} connections: {stats['completed']} streams completed "
          f"(not-detected received after audio-stop), {stats['listened']} custom-event streams, "
          f"{stats['dropped']} dropped mid-stream, {stats['bad']} sending bad frames, "
          f"{stats['refused']} refused (server at --max-streams)")
    print(f"  {sum(errors.values())} errors returned: " + ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    failures = {k: v for k, v in stats.items() if k.startswith("client failure")}
    print(f"  client-side failures (timeouts, resets): {failures or 'none'}")
    print(f"  server RSS before {before['VmRSS'] / 1024:.1f} MiB, after {after['VmRSS'] / 1024:.1f} MiB, "
          f"peak {after['VmHWM'] / 1024:.1f} MiB")


async def _one_stream(port: int, stats, errors, rng: random.Random, kind: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stats["connections"] += 1
    replies: list[Event] = []

    async def read_all() -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while (event := await async_read_event(reader)) is not None:
                replies.append(event)
                if event.type == "error":
                    errors[event.data.get("code")] += 1
                if event.type == "not-detected" or event.data.get("code") == c.WYOMING_ERROR_TOO_MANY_STREAMS:
                    return  # the stream's answer: done, or refused (server at --max-streams)

    reading = asyncio.create_task(read_all())
    try:
        rate, width, channels = (RATE, 2, 1) if kind != "listen" else rng.choice([(48_000, 2, 2), (22_050, 2, 1), (16_000, 4, 1)])
        if kind == "listen":
            await _send(writer, Event(c.WYOMING_LISTEN, {"room": "soak"}))
        else:
            await _send(writer, Detect().event())
        if kind == "bad":
            await _send_raw(writer, b"not a frame\n")
            await _send(writer, Event("no-such-event"))
        await _send(writer, AudioStart(rate=rate, width=width, channels=channels).event())
        chunks = rng.randint(20, 300)
        if kind == "drop":
            chunks = rng.randint(1, chunks)
        samples = rate * CHUNK_MS // 1000
        for i in range(chunks):
            if reading.done():  # refused or cut off: this stream is over
                return
            audio = (rng.random() * 0.01 if i % 100 else 0.5) * np.random.default_rng(i).standard_normal(samples * channels)
            pcm = (np.clip(audio, -1, 1) * (2 ** (8 * width - 1) - 1)).astype(f"<i{width}").tobytes()
            await _send(writer, AudioChunk(rate=rate, width=width, channels=channels, audio=pcm).event())
            stats["frames"] += 1
            stats["audio_seconds"] += CHUNK_MS / 1000
        if kind == "drop":
            stats["dropped"] += 1
            return
        if kind == "listen":
            stats["listened"] += 1
        if kind == "bad":
            stats["bad"] += 1
        await _send(writer, AudioStop().event())
        if kind != "listen":
            await asyncio.wait_for(reading, 60)
            stats["completed"] += any(e.type == "not-detected" for e in replies)
    except (ConnectionError, asyncio.TimeoutError) as err:
        stats[f"client failure {type(err).__name__}"] += 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        # (a refusal may arrive after the whole stream was sent: counted from the replies)
        stats["refused"] += any(e.data.get("code") == c.WYOMING_ERROR_TOO_MANY_STREAMS for e in replies)


async def _send(writer: asyncio.StreamWriter, event: Event) -> None:
    await async_write_event(event, writer)


async def _send_raw(writer: asyncio.StreamWriter, raw: bytes) -> None:
    writer.write(raw)
    await writer.drain()


# --- latency -----------------------------------------------------------------
async def _latency(port: int, pid: int, streams: int, seconds: float) -> None:
    cpu_before, wall_before = _cpu_seconds(pid), time.monotonic()
    results = await asyncio.gather(*(_latency_stream(port, seconds, seed) for seed in range(streams)))
    server_cores = (_cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    by_type: dict[str, list[float]] = collections.defaultdict(list)
    for stream in results:
        for event_type, ms in stream:
            by_type[event_type].append(ms)
    latencies = [ms for each in by_type.values() for ms in each]
    if not latencies:
        print(f"latency, {streams} streams: no events")
        return
    print(f"latency, {streams:>2} concurrent streams: {_percentiles(latencies)}; "
          f"server CPU {server_cores:.2f} cores ({server_cores / streams * 100:.1f} % of a core per stream)")
    if len(by_type) > 1:  # (a model's decisions and the safety net's sounds come from different lanes)
        for event_type, each in sorted(by_type.items()):
            print(f"  {event_type}: {_percentiles(each)}")


def _percentiles(latencies: list[float]) -> str:
    latencies = sorted(latencies)
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    return f"{len(latencies)} events, p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms"


async def _latency_stream(port: int, seconds: float, seed: int) -> list[tuple[str, float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = np.random.default_rng(seed)
    samples = RATE * CHUNK_MS // 1000
    n_chunks = int(seconds * 1000 / CHUNK_MS)
    sent_at: list[float] = []  # chunk i ends at stream time (i + 1) * 10 ms
    latencies: list[tuple[str, float]] = []  # (event type, ms)

    async def read_events() -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while (event := await async_read_event(reader)) is not None:
                now = time.monotonic()
                t = event.data.get("t") if event.type.startswith(c.WYOMING_EVENT_PREFIX) else None
                if t is None:
                    continue
                index = max(0, int(np.ceil(t * 1000 / CHUNK_MS - 1e-6)) - 1)
                if index < len(sent_at):
                    latencies.append((event.type.removeprefix(c.WYOMING_EVENT_PREFIX), (now - sent_at[index]) * 1000))

    reading = asyncio.create_task(read_events())
    await _send(writer, Event(c.WYOMING_LISTEN, {"room": f"latency-{seed}"}))
    await _send(writer, AudioStart(rate=RATE, width=2, channels=1).event())
    start = time.monotonic() + rng.uniform(0, CHUNK_MS / 1000)  # streams not in lock-step
    for i in range(n_chunks):
        await asyncio.sleep(max(0.0, start + i * CHUNK_MS / 1000 - time.monotonic()))
        loud = (i % 100) < 10  # a 0.1 s burst every second
        audio = rng.standard_normal(samples) * (0.5 if loud else 0.003)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        sent_at.append(time.monotonic())
        await _send(writer, AudioChunk(rate=RATE, width=2, channels=1, audio=pcm).event())
    await _send(writer, AudioStop().event())
    await asyncio.sleep(1.0)
    writer.close()
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reading
    return latencies


if __name__ == "__main__":  # python -m model_runtime.server_bench
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
