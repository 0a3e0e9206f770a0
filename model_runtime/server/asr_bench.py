"""`audio-interaction bench assist`: what an Assist satellite room gets, on generated speech, printed.

- Wake words: each microWakeWord model on its phrase spoken by espeak-ng
  (the test set's voices, two speeds): detections out of clips; false
  detections of every model on the spoken commands (no wake word in them).
- Speech-to-text: the server's Wyoming asr service (a real server in this
  process, on localhost) on Home Assistant commands spoken by the same
  voices: exact transcripts, word error rate, and seconds per request
  (audio-stop -> transcript) against the audio's length.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time

import numpy as np
from scipy.signal import resample_poly
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import async_read_event, async_write_event

from .. import constants as c
from ..audio import float_to_pcm16
from ..engine import EngineOptions, create_engine
from ..lite import testset as ts
from ..lite.bench import word_error_rate
from ..lite.wakeword import WakeWordDetector, available_wake_words
from .app import WyomingServer

SPEEDS = (140, 170)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voices", type=int, default=len(ts.VOICES), help="how many of the test set's voices to use")


def speech(text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng speech at 16 kHz float32."""
    audio = ts.espeak(text, voice, speed)
    return resample_poly(audio, c.SAMPLE_RATE, ts.SYNTH_RATE).astype(np.float32)


def _pad(audio: np.ndarray, before: float = 0.5, after: float = 1.0) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * c.SAMPLE_RATE), np.float32), audio,
                           np.zeros(int(after * c.SAMPLE_RATE), np.float32)])


def _detects(name: str, audio: np.ndarray) -> bool:
    detector = WakeWordDetector([name])
    try:
        return bool(detector.process(audio))
    finally:
        detector.close()


def wake_word_figures(voices: tuple[str, ...]) -> None:
    print("== wake words (espeak-ng) ==")
    commands = [_pad(speech(text, voice, 160)) for text in ts.COMMANDS for voice in voices]
    for name in available_wake_words():
        phrase = name.replace("_", " ")
        clips = [_pad(speech(phrase, voice, speed)) for voice in voices for speed in SPEEDS]
        hits = sum(_detects(name, clip) for clip in clips)
        false = sum(_detects(name, clip) for clip in commands)
        print(f"{name:12s} detected {hits:2d}/{len(clips)}   false detections on commands {false}/{len(commands)}")


async def _transcribe(port: int, audio: np.ndarray) -> tuple[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pcm = float_to_pcm16(audio)
    await async_write_event(Transcribe(language="en").event(), writer)
    await async_write_event(AudioStart(rate=c.SAMPLE_RATE, width=2, channels=1).event(), writer)
    for start in range(0, len(pcm), 3200):
        await async_write_event(AudioChunk(rate=c.SAMPLE_RATE, width=2, channels=1, audio=pcm[start:start + 3200]).event(), writer)
    started = time.perf_counter()
    await async_write_event(AudioStop().event(), writer)
    while (event := await async_read_event(reader)) is not None and event.type != "transcript":
        pass
    took = time.perf_counter() - started
    writer.close()
    return (event.data["text"] if event else ""), took


async def stt_figures(voices: tuple[str, ...]) -> None:
    print("== speech-to-text: the server's asr service (PocketSphinx) ==")
    logging.getLogger("model_runtime.server").setLevel(logging.WARNING)  # no line per connection
    engine = create_engine(EngineOptions())
    server = WyomingServer(engine)
    await server.start("tcp://127.0.0.1:0")
    try:
        exact, wers, times, lengths = 0, [], [], []
        per_voice: dict[str, list[float]] = {}
        for voice in voices:
            for text in ts.COMMANDS:
                audio = speech(text, voice, 160)
                heard, took = await _transcribe(server.address[1], audio)
                wer = word_error_rate(text, heard)
                exact += heard == text
                wers.append(wer)
                per_voice.setdefault(voice, []).append(wer)
                times.append(took)
                lengths.append(len(audio) / c.SAMPLE_RATE)
        n = len(wers)
        print(f"commands: {n}; exact transcripts {exact}/{n}; mean WER {statistics.mean(wers):.2f}")
        for voice, values in per_voice.items():
            print(f"  {voice:16s} WER {statistics.mean(values):.2f}")
        print(f"seconds per request after audio-stop: median {statistics.median(times):.2f}, max {max(times):.2f} "
              f"(audio {statistics.mean(lengths):.1f} s on average)")
    finally:
        await server.stop()
        engine.close()


def main(args: argparse.Namespace) -> int:
    voices = ts.VOICES[: max(1, args.voices)]
    wake_word_figures(voices)
    asyncio.run(stt_figures(voices))
    return 0
