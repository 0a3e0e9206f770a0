"""`audio-interaction bench assist`: what an Assist satellite room gets, on generated speech, printed.

Speakers: the Piper voice of model_runtime/piper_voice.py (a natural neural
voice from a PyPI wheel) in three renditions (takes) at three speeds, the
first of them again under steady noise at NOISY_SNR_DB (a fan, a fridge:
seeded, so repeatable), and espeak-ng voices of the lite test set for
comparison.

- Wake words: each microWakeWord model on its phrase, per speaker:
  detections out of clips; false detections of every model on the spoken
  commands (no wake word in them).
- Speech-to-text: the server's Wyoming asr service (a real server in this
  process, on localhost) on a bench home's commands (HOME_COMMANDS, sentences
  of Home Assistant's built-in intents over HOME_NAMES / HOME_AREAS) and on
  speech that is no command (OTHER_SPEECH), each without and with the home's
  names in the request (the grammar bias of lite/home_phrases.py): exact
  transcripts and word error rate per speaker; for other speech, how often
  the bias changed what the general model heard (it should not); seconds per
  request (audio-stop -> transcript), and the server process's longest pause
  meanwhile, as a thread ticking every millisecond sees it (the rooms' streams
  and the event loop stop that long: PocketSphinx holds the GIL while it
  decodes, so it decodes in a process of its own).
- The score that decides between the grammar and the general model
  (home_phrases.GrammarFit): its range on commands whose grammar sentence
  was right and on other speech forced into a whole grammar sentence, per
  kind of speaker, beside the thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import threading
import time
from collections.abc import Callable
import functools
from dataclasses import dataclass, field

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
from ..lite.home_phrases import MAX_LOSS_TO_FREE_SPEECH, MIN_FRAME_SCORE
from ..lite.recognizer import Recognition
from ..lite.wakeword import WakeWordDetector, available_wake_words
from ..piper_voice import piper_speech
from .app import WyomingServer

ESPEAK_SPEEDS = (140, 170)
# (take, length_scale): three renditions by the Piper voice, at its own pace, faster and slower.
PIPER_READINGS = ((0, 1.0), (1, 0.85), (2, 1.2))
NOISY_SNR_DB = 20.0

# The bench home: what Assist exposes (entity names) and its areas.
HOME_NAMES = (
    "kitchen light", "living room lamp", "bedroom light", "ceiling fan", "front door", "back door", "garage door",
    "office blinds", "porch light", "coffee maker", "hallway light", "television", "thermostat", "desk lamp",
    "bathroom fan",
)
HOME_AREAS = ("kitchen", "living room", "bedroom", "office", "garage", "hallway", "bathroom", "basement")
HOME_COMMANDS = (
    "turn on the kitchen light", "turn off the kitchen light", "turn on the living room lamp",
    "turn off the bedroom light", "turn on the ceiling fan", "turn off the ceiling fan", "lock the front door",
    "unlock the back door", "open the garage door", "close the garage door", "open the office blinds",
    "close the office blinds", "turn on the porch light", "turn off the porch light", "turn on the coffee maker",
    "turn on the hallway light", "turn off the television", "turn on the desk lamp", "turn off the bathroom fan",
    "turn the desk lamp off", "turn on the lights in the kitchen", "turn off the lights in the bedroom",
    "turn off the living room lights", "turn on the basement lights", "turn off all the lights",
    "set the bedroom light brightness to fifty percent", "set the kitchen light to twenty percent",
    "set the desk lamp brightness to seventy five percent", "what is the temperature in the living room",
    "what's the temperature", "set the temperature to twenty one degrees", "is the front door locked",
    "is the garage door open", "is the porch light on", "set a timer for ten minutes",
    "set a timer for thirty seconds", "cancel the timer", "what time is it", "what's the weather like today",
    "switch on the television",
)
# No command of the bench home (two name things the home does not have): the bias must leave these alone.
OTHER_SPEECH = (
    "tell me a joke", "what is the capital of france", "play some jazz music in the kitchen",
    "add milk to the shopping list", "call my sister tonight", "how tall is mount everest", "turn on the radio",
    "open the window", "set an alarm for seven", "good morning",
)


@dataclass(frozen=True)
class Speaker:
    name: str
    say: Callable[[str], np.ndarray]  # text -> 16 kHz float32

    @property
    def kind(self) -> str:
        """The kind of speech, for the score figures: piper, piper noisy, espeak."""
        return self.name.split()[0] + (" noisy" if "noise" in self.name else "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--voices", type=int, default=1, help="how many of the lite test set's espeak-ng voices to add")
    parser.add_argument("--misses", action="store_true", help="print each command not heard exactly with the home's names")


def espeak_speech(text: str, voice: str, speed: int) -> np.ndarray:
    """espeak-ng speech at 16 kHz float32."""
    audio = ts.espeak(text, voice, speed)
    return resample_poly(audio, c.SAMPLE_RATE, ts.SYNTH_RATE).astype(np.float32)


def speakers(espeak_voices: int) -> list[Speaker]:
    # Cached: the wake-word and the speech-to-text figures hear the same sentences.
    out = [
        Speaker(f"piper joe take {take} x{scale:g}",
                functools.lru_cache(maxsize=None)(lambda text, take=take, scale=scale: piper_speech(text, take, scale)))
        for take, scale in PIPER_READINGS
    ]
    first = out[0]
    out.append(Speaker(f"piper take 0 +noise {NOISY_SNR_DB:g} dB", lambda text: with_noise(first.say(text), NOISY_SNR_DB)))
    out += [Speaker(f"espeak {voice}", lambda text, voice=voice: espeak_speech(text, voice, 160))
            for voice in ts.VOICES[:espeak_voices]]
    return out


def with_noise(audio: np.ndarray, snr_db: float) -> np.ndarray:
    """`audio` under pink-ish noise (seeded by its length) at `snr_db` below the speech's level."""
    rng = np.random.default_rng(len(audio))
    white = rng.standard_normal(len(audio))
    noise = resample_poly(rng.standard_normal(len(audio) // 4 + 1), 4, 1)[: len(audio)] + 0.3 * white  # low-heavy
    speech_power = float(np.mean(audio[np.abs(audio) > 0.01] ** 2)) if np.any(np.abs(audio) > 0.01) else 1e-6
    noise *= np.sqrt(speech_power / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def _pad(audio: np.ndarray, before: float = 0.5, after: float = 1.0) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * c.SAMPLE_RATE), np.float32), audio,
                           np.zeros(int(after * c.SAMPLE_RATE), np.float32)])


def _detects(name: str, audio: np.ndarray) -> bool:
    detector = WakeWordDetector([name])
    try:
        return bool(detector.process(audio))
    finally:
        detector.close()


def wake_word_figures(piper: list[Speaker], espeak_voices: tuple[str, ...]) -> None:
    print("== wake words: detections of each model on its phrase ==")
    names = available_wake_words()
    for name in names:
        phrase = name.replace("_", " ")
        piper_hits = [_detects(name, _pad(speaker.say(phrase))) for speaker in piper]
        espeak_hits = [_detects(name, _pad(espeak_speech(phrase, voice, speed)))
                       for voice in espeak_voices for speed in ESPEAK_SPEEDS]
        per_reading = " ".join("+" if hit else "-" for hit in piper_hits)
        print(f"{name:12s} piper {sum(piper_hits)}/{len(piper_hits)} ({per_reading})   "
              f"espeak {sum(espeak_hits)}/{len(espeak_hits)} ({len(espeak_voices)} voices x {len(ESPEAK_SPEEDS)} speeds)")
    commands = [_pad(piper[0].say(text)) for text in HOME_COMMANDS]
    false = {name: sum(_detects(name, clip) for clip in commands) for name in names}
    print(f"false detections on {len(commands)} Piper commands: "
          + ", ".join(f"{name} {count}" for name, count in false.items()))


class PauseWatch:
    """A thread that ticks every millisecond: the longest gap between its ticks since `reset`."""

    def __init__(self) -> None:
        self._longest, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._tick, name="pause-watch", daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self._longest = 0.0

    def longest(self) -> float:
        return self._longest

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _tick(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(0.001):
            now = time.perf_counter()
            self._longest, last = max(self._longest, now - last), now


async def _transcribe(port: int, audio: np.ndarray, home: bool, pauses: PauseWatch) -> tuple[str, float, float]:
    """(transcript, seconds from audio-stop to it, the server process's longest pause meanwhile)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pcm = float_to_pcm16(audio)
    names = {"transcript_names": list(HOME_NAMES), "transcript_terms": list(HOME_AREAS)} if home else {}
    await async_write_event(Transcribe(language="en", **names).event(), writer)
    await async_write_event(AudioStart(rate=c.SAMPLE_RATE, width=2, channels=1).event(), writer)
    for start in range(0, len(pcm), 3200):
        await async_write_event(AudioChunk(rate=c.SAMPLE_RATE, width=2, channels=1, audio=pcm[start:start + 3200]).event(), writer)
    started = time.perf_counter()
    pauses.reset()
    await async_write_event(AudioStop().event(), writer)
    while (event := await async_read_event(reader)) is not None and event.type != "transcript":
        pass
    took = time.perf_counter() - started
    writer.close()
    return (event.data["text"] if event else ""), took, pauses.longest()


@dataclass
class Tally:
    exact: int = 0
    wers: list[float] = field(default_factory=list)

    def add(self, reference: str, heard: str) -> None:
        self.exact += heard == reference
        self.wers.append(word_error_rate(reference, heard))

    def __str__(self) -> str:
        return f"exact {self.exact:2d}/{len(self.wers)} WER {statistics.mean(self.wers or [0.0]):.2f}"


def _record(recognizer, seen: list[Recognition]) -> None:
    """Keep each Recognition the server's recogniser returns (its grammar fit), in order."""
    transcribe = recognizer.transcribe

    def recording(audio, home=None):
        result = transcribe(audio, home)
        if home:
            seen.append(result)
        return result

    recognizer.transcribe = recording


def _span(values: list[float]) -> str:
    return f"{min(values):6.2f} .. {max(values):6.2f} (median {statistics.median(values):6.2f}, n={len(values)})" if values else "none"


def score_figures(fits: dict[str, list[tuple[bool, str, Recognition]]]) -> None:
    print(f"== the grammar's fit (per 10 ms frame): sentence score >= {MIN_FRAME_SCORE}, loss to free speech "
          f"<= {MAX_LOSS_TO_FREE_SPEECH} ==")
    for kind, rows in fits.items():
        right = [r.fit for command, text, r in rows if command and r.fit and r.grammar_text == text]
        forced = [r.fit for command, _, r in rows if not command and r.fit and r.complete]
        print(f"{kind:12s} commands, grammar sentence right: score {_span([f.frame_score for f in right])}  "
              f"loss {_span([f.loss for f in right])}")
        print(f"{kind:12s} other speech forced into a whole sentence: score {_span([f.frame_score for f in forced])}  "
              f"loss {_span([f.loss for f in forced])}")


async def stt_figures(all_speakers: list[Speaker], show_misses: bool = False) -> None:
    print("== speech-to-text: the server's asr service (PocketSphinx), without / with the home's names ==")
    logging.getLogger("model_runtime.server").setLevel(logging.WARNING)  # no line per connection
    engine = create_engine(EngineOptions())
    seen: list[Recognition] = []
    _record(engine.recognizer, seen)
    fits: dict[str, list[tuple[bool, str, Recognition]]] = {}
    server = WyomingServer(engine)
    await server.start("tcp://127.0.0.1:0")
    port = server.address[1]
    pauses = PauseWatch()
    try:
        totals = {False: Tally(), True: Tally()}
        other_totals = {False: Tally(), True: Tally()}
        changed_total, times, paused, lengths = 0, {False: [], True: []}, {False: [], True: []}, []
        for speaker in all_speakers:
            tallies = {False: Tally(), True: Tally()}
            for text in HOME_COMMANDS:
                audio = _pad(speaker.say(text), 0.3, 0.5)
                lengths.append(len(audio) / c.SAMPLE_RATE)
                for home in (False, True):
                    heard, took, pause = await _transcribe(port, audio, home, pauses)
                    if home:
                        fits.setdefault(speaker.kind, []).append((True, text, seen[-1]))
                    tallies[home].add(text, heard)
                    if home and show_misses and heard != text:
                        print(f"  miss ({speaker.name}): {text!r} -> {heard!r}")
                    totals[home].add(text, heard)
                    times[home].append(took)
                    paused[home].append(pause)
            changed = 0
            for text in OTHER_SPEECH:
                audio = _pad(speaker.say(text), 0.3, 0.5)
                free, _, _ = await _transcribe(port, audio, False, pauses)
                biased, _, _ = await _transcribe(port, audio, True, pauses)
                fits.setdefault(speaker.kind, []).append((False, text, seen[-1]))
                changed += biased != free
                other_totals[False].add(text, free)
                other_totals[True].add(text, biased)
            changed_total += changed
            print(f"{speaker.name:26s} commands: general {tallies[False]}  |  home names {tallies[True]}  |  "
                  f"other speech changed by the bias {changed}/{len(OTHER_SPEECH)}")
        print(f"{'all':26s} commands: general {totals[False]}  |  home names {totals[True]}")
        print(f"{'':26s} other speech: general {other_totals[False]}  |  home names {other_totals[True]}  |  "
              f"changed by the bias {changed_total}/{len(OTHER_SPEECH) * len(all_speakers)}")
        for home in (False, True):
            print(f"seconds per request after audio-stop ({'home names' if home else 'general'}): "
                  f"median {statistics.median(times[home]):.2f}, max {max(times[home]):.2f} "
                  f"(audio {statistics.mean(lengths):.1f} s on average); the server process's longest pause "
                  f"meanwhile: median {1000 * statistics.median(paused[home]):.0f} ms, "
                  f"max {1000 * max(paused[home]):.0f} ms")
        score_figures(fits)
    finally:
        pauses.close()
        await server.stop()
        engine.close()


def main(args: argparse.Namespace) -> int:
    espeak_voices = ts.VOICES[: max(0, args.voices)]
    all_speakers = speakers(len(espeak_voices))
    piper = all_speakers[: len(PIPER_READINGS)]  # the clean readings
    wake_word_figures(piper, espeak_voices)
    asyncio.run(stt_figures(all_speakers, args.misses))
    return 0
