"""A generated test set for the lite engine: alarms in household noise, and hard negatives.

Nothing here is hand-picked: every clip is synthesized from a `ClipSpec`
(seeded, so the same spec always gives the same audio), delivered the way a
real home delivers audio (8, 16 or 48 kHz, mono or stereo, mp3, telephone
band) through ffmpeg/sox, and cached as a file under a temporary folder.
The tests and `audio-interaction bench lite` share it.

Alarm timing follows ISO 8201 / NFPA 72:
- temporal-three (smoke): three 0.5 s beeps with 0.5 s gaps, then 1.5 s off (4 s cycle);
- temporal-four (CO): four 0.1 s beeps with 0.1 s gaps, then 5 s off (5.7 s cycle).
SNR is measured against the alarm while it sounds (beep-on power, before
reverb) versus the whole background: the strict convention.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

SYNTH_RATE = 48_000
GENERATOR_VERSION = 5  # bump when synthesis changes, so stale cached files are not reused

T3_ON, T3_OFF, T3_PAUSE, T3_BEEPS = 0.5, 0.5, 1.5, 3
T4_ON, T4_OFF, T4_PAUSE, T4_BEEPS = 0.1, 0.1, 5.0, 4
T3_CYCLE = T3_BEEPS * T3_ON + (T3_BEEPS - 1) * T3_OFF + T3_PAUSE  # 4.0 s
T4_CYCLE = T4_BEEPS * T4_ON + (T4_BEEPS - 1) * T4_OFF + T4_PAUSE  # 5.7 s
# An alarm must be found within one pattern cycle after it starts (4 s for T3, 6 s for T4),
# and from its own beeps: the detection's start within this of the alarm's first beep.
DEADLINE_S = {"smoke_alarm": T3_CYCLE, "co_alarm": 6.0}
START_TOLERANCE_S = 0.3

ALARM_KINDS = {"smoke_alarm": "t3", "co_alarm": "t4"}
# Carriers: a 520 Hz low-frequency sounder (square wave, as the standard for
# sleeping-area alarms uses), a 3.1 kHz piezo, and two sweeping sounders.
CARRIERS = ("520", "3100", "sweep_piezo", "sweep_octave")
# A real low-frequency unit: its square is rarely symmetric (a 30 % duty cycle has even harmonics
# too) and its small speaker rolls off below ~700 Hz (a fundamental weaker than its harmonics).
SPEAKER_CARRIER = "520_speaker"
PULSE_CARRIER = "520_pulse"  # a 25 %-duty square straight from its sounder: strong even harmonics
LOW_UNIT_CARRIERS = ("520", SPEAKER_CARRIER, PULSE_CARRIER)
# What a combination alarm says in each pause (0.3 s after its group's last beep, as loud as its beeps).
ANNOUNCEMENTS = {"smoke_alarm": "Fire! Fire!", "co_alarm": "Warning! Carbon monoxide!"}
BACKGROUNDS = ("kitchen", "vacuum", "tv_speech", "music", "fan")
NOISE_BACKGROUNDS = ("kitchen", "vacuum", "fan")
TONAL_BACKGROUNDS = ("tv_speech", "music")
NEGATIVES = (
    "speech",
    "music",
    "chiptune",
    "phone_uk",
    "phone_us",
    "phone_trill",
    "microwave",
    "oven_timer",
    "dishwasher",
    "reversing_beeper",
    "fast_beeper",
    "metronome",
    "dog",
    "vacuum",
    "door_slam",
    "kettle",
    "whistle_tune",
    "sweep_beeper",
)
# Negatives that are repetitive tonal beeps: `beeping` is the right answer for them.
BEEPING_NEGATIVES = ("microwave", "oven_timer", "reversing_beeper", "fast_beeper", "sweep_beeper")  # (a dishwasher's melody is not one tone)

SPEECH_LINES = (
    "The weather tomorrow looks cloudy with a chance of rain in the afternoon.",
    "Could you remind me to call my sister when I get home tonight?",
    "I think we should paint the living room a lighter colour this spring.",
    "The train was late again this morning, so I missed the first meeting.",
    "Dinner will be ready in about twenty minutes, please set the table.",
    "Have you seen my keys? I left them next to the door yesterday.",
)
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp+m3", "en-029+f2", "en-gb-scotland")
COMMANDS = (
    "turn on the kitchen light",
    "turn off the living room lights",
    "set the thermostat to twenty one degrees",
    "what is the temperature in the bedroom",
    "lock the front door",
    "open the garage door",
    "start the vacuum cleaner",
    "close the blinds in the office",
    "turn off all the lights",
    "set a timer for ten minutes",
)


@dataclass(frozen=True)
class Delivery:
    """How a clip reaches the engine: file rate, channels and codec."""

    rate: int = 16_000
    channels: int = 1
    codec: str = "wav"  # wav | mp3 | phone (8 kHz, 300-3400 Hz band)

    @property
    def tag(self) -> str:
        return f"{self.rate // 1000}k{'st' if self.channels == 2 else 'mo'}-{self.codec}"


@dataclass(frozen=True)
class ClipSpec:
    """One test clip; `truth` in the rendered clip says what an engine should hear."""

    name: str
    kind: str  # alarm | background (an alarm clip without its alarm) | negative | speech | wake
    label: str = ""  # alarm label, negative type, or wake word
    carrier: str = ""
    background: str = "fan"
    snr_db: float = 20.0
    reverb_rt60: float = 0.0
    clip_level: float = 0.0  # >0: hard clipping at this fraction of the peak
    lead_s: float = 2.5  # background before the event starts
    duration_s: float = 9.0
    seed: int = 0
    delivery: Delivery = field(default_factory=Delivery)
    text: str = ""
    announced: bool = False  # an alarm that speaks in its pauses (ANNOUNCEMENTS)

    def background_alone(self) -> "ClipSpec":
        """This alarm clip without its alarm: the same background, at the same level, delivered the same way."""
        return replace(self, name=f"{self.name}-background-alone", kind="background")

    def key(self) -> str:
        blob = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class Clip:
    spec: ClipSpec
    path: Path
    truth: dict


def alarm_clip_seconds(label: str, cycles: int = 1) -> float:
    """An alarm clip's length: the alarm's `cycles` pattern cycles and 4.5 s more (the lead before it, its next beeps)."""
    return (T3_CYCLE if label == "smoke_alarm" else T4_CYCLE) * cycles + 4.5


def found_in_time(clip: Clip, hits: list) -> bool:
    """Whether the first of `hits` (the clip's alarm `sound` starts, in order) came within its first cycle, from its own beeps."""
    return (
        bool(hits)
        and 0 < hits[0].t - clip.truth["start"] <= DEADLINE_S[clip.spec.label]
        and abs(hits[0].data["start"] - clip.truth["start"]) <= START_TOLERANCE_S
    )


# --- Sources ------------------------------------------------------------------


def _t(duration: float) -> np.ndarray:
    return np.arange(int(round(duration * SYNTH_RATE))) / SYNTH_RATE


def _ramp(x: np.ndarray, ramp_s: float = 0.005) -> np.ndarray:
    """Short fades, as a real sounder's drive circuit has (no clicks)."""
    n = min(len(x) // 2, int(ramp_s * SYNTH_RATE))
    if n:
        w = np.sin(np.linspace(0, np.pi / 2, n)) ** 2
        x = x.copy()
        x[:n] *= w
        x[-n:] *= w[::-1]
    return x


def _tone(freq_start: float, freq_end: float, duration: float, shape: str = "sine") -> np.ndarray:
    t = _t(duration)
    freq = np.linspace(freq_start, freq_end, len(t))
    phase = 2 * np.pi * np.cumsum(freq) / SYNTH_RATE
    if shape == "square":  # band-limited square: odd harmonics up to 8 kHz
        out = np.zeros_like(phase)
        for h in range(1, 16, 2):
            if h * max(freq_start, freq_end) < 8_000:
                out += np.sin(h * phase) / h
        return out * (4 / np.pi) * 0.7
    if shape == "piezo":  # a piezo disc: strong fundamental, some 2nd/3rd harmonic
        return np.sin(phase) + 0.25 * np.sin(2 * phase) + 0.12 * np.sin(3 * phase)
    if shape == "speaker":  # a 30 %-duty square through a small speaker
        return sosfilt(butter(2, 700.0, btype="high", fs=SYNTH_RATE, output="sos"), _pulse(phase, max(freq_start, freq_end), 0.3))
    if shape == "pulse":  # a 25 %-duty square: its 2nd harmonic as strong as its 3rd is weak
        return _pulse(phase, max(freq_start, freq_end), 0.25)
    return np.sin(phase)


def _pulse(phase: np.ndarray, top_hz: float, duty: float) -> np.ndarray:
    """A band-limited pulse wave of `duty` (harmonic h: sin(duty pi h) / h), up to 8 kHz: even harmonics too."""
    out = np.zeros_like(phase)
    for h in range(1, 16):
        if h * top_hz < 8_000:
            out += np.sin(duty * np.pi * h) / h * np.cos(h * phase)
    return out


def _carrier_beep(carrier: str, duration: float, detune: float) -> np.ndarray:
    if carrier == "520":
        return _ramp(_tone(520 * detune, 520 * detune, duration, "square"))
    if carrier == SPEAKER_CARRIER:
        return _ramp(_tone(520 * detune, 520 * detune, duration, "speaker"))
    if carrier == PULSE_CARRIER:
        return _ramp(_tone(520 * detune, 520 * detune, duration, "pulse"))
    if carrier == "3100":
        return _ramp(_tone(3100 * detune, 3100 * detune, duration, "piezo"))
    # Sweeping sounders sweep at a fixed rate, so a short beep covers less of the sweep.
    if carrier == "sweep_piezo":  # a sweeping piezo: 2.9 -> 3.4 kHz per 0.5 s
        return _ramp(_tone(2900 * detune, (2900 + 1000 * duration) * detune, duration, "piezo"))
    if carrier == "sweep_octave":  # an electronic sounder sweeping up one octave per 0.5 s
        return _ramp(_tone(900 * detune, 900 * 2 ** (duration / 0.5) * detune, duration, "sine"))
    raise ValueError(f"unknown carrier {carrier!r}; choose one of {CARRIERS + LOW_UNIT_CARRIERS[1:]}")


def _announce(sound: np.ndarray, beeps: list[tuple[float, float]], label: str) -> None:
    """Speak the alarm's announcement in each of its pauses: 0.3 s after a group's last beep, as loud as the beeps."""
    words = espeak(ANNOUNCEMENTS[label], "en-us", 170)
    words *= np.max(np.abs(sound)) / np.max(np.abs(words))
    group = T3_BEEPS if ALARM_KINDS[label] == "t3" else T4_BEEPS
    for _, off in beeps[group - 1 :: group]:
        _place(sound, words, off + 0.3)


def alarm_pattern(label: str, carrier: str, duration: float, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A T3 or T4 alarm sounding for `duration` s from t=0; returns audio and beep (on, off) times."""
    pattern = ALARM_KINDS[label]
    on, off, pause, n = (T3_ON, T3_OFF, T3_PAUSE, T3_BEEPS) if pattern == "t3" else (T4_ON, T4_OFF, T4_PAUSE, T4_BEEPS)
    out = np.zeros(int(duration * SYNTH_RATE))
    beeps: list[tuple[float, float]] = []
    detune = 1 + rng.uniform(-0.03, 0.03)  # every unit sounds a little different
    t = 0.0
    while t < duration:
        for i in range(n):
            # Timing jitter of a real unit: +-8 % on every on and off time.
            beep_len = on * rng.uniform(0.92, 1.08)
            start = int(t * SYNTH_RATE)
            beep = _carrier_beep(carrier, beep_len, detune)
            end = min(len(out), start + len(beep))
            if start >= len(out):
                break
            out[start:end] += beep[: end - start]
            beeps.append((t, t + beep_len))
            t += beep_len + (off * rng.uniform(0.92, 1.08) if i < n - 1 else pause * rng.uniform(0.92, 1.08))
    return out, beeps


@functools.lru_cache(maxsize=64)
def espeak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """Speech from espeak-ng at SYNTH_RATE (cached: the same line is spoken once per process)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, check=True).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    g = np.gcd(rate, SYNTH_RATE)
    return resample_poly(audio, SYNTH_RATE // g, rate // g)


def _colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SYNTH_RATE)
    f[0] = f[1]
    spec *= f ** (-exponent / 2)
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-12)


def _bandpass(x: np.ndarray, lo: float, hi: float, order: int = 4) -> np.ndarray:
    sos = butter(order, [lo, hi], btype="band", fs=SYNTH_RATE, output="sos")
    return sosfilt(sos, x)


def _place(out: np.ndarray, sound: np.ndarray, at_s: float, gain: float = 1.0) -> None:
    start = int(at_s * SYNTH_RATE)
    if start >= len(out):
        return
    end = min(len(out), start + len(sound))
    out[start:end] += gain * sound[: end - start]


def _decay(duration: float, tau: float) -> np.ndarray:
    return np.exp(-_t(duration) / tau)


def _piano_note(freq: float, duration: float) -> np.ndarray:
    t = _t(duration)
    note = sum(np.sin(2 * np.pi * freq * h * t) * (0.6**h) for h in range(1, 7))
    return _ramp(note * np.exp(-t / 0.6), 0.003)


def synth_music(duration: float, rng: np.random.Generator) -> np.ndarray:
    """Piano-like chords, a bass line and drums at a random tempo: tonal and rhythmic, like real music."""
    out = np.zeros(int(duration * SYNTH_RATE))
    beat = 60.0 / rng.uniform(90, 135)
    root = rng.choice([196.0, 220.0, 246.9, 261.6])
    progression = [[0, 4, 7], [5, 9, 12], [7, 11, 14], [-3, 0, 4]]
    t, bar = 0.0, 0
    while t < duration:
        chord = progression[bar % 4]
        for b in range(4):
            at = t + b * beat
            for semis in chord:
                _place(out, _piano_note(root * 2 ** (semis / 12) * 2, beat * 0.9), at, 0.18)
            _place(out, _piano_note(root * 2 ** (chord[0] / 12) / 2, beat * 0.9), at, 0.35)
            melody = root * 2 ** ((chord[rng.integers(3)] + 12) / 12) * 2
            _place(out, _piano_note(melody, beat / 2), at + beat / 2, 0.2)
            kick = np.sin(2 * np.pi * 60 * _t(0.15)) * _decay(0.15, 0.04)
            _place(out, kick if b % 2 == 0 else rng.standard_normal(int(0.1 * SYNTH_RATE)) * _decay(0.1, 0.02) * 0.3, at, 0.6)
        t += 4 * beat
        bar += 1
    return out


# Music and TV speech alone are where the alarm detector's rules were found wanting (a note's
# partial repeated on the beat, a voice's scraps at a sounder's pace look like its beeps). Over
# the sessions the rules were tuned on music seeds 0-2,699 and TV speech seeds 0-3,999 (those
# looked at, found false and fixed): only later seeds measure how they hold (`bench lite`
# counts those). Measured 2026-11-27: music seeds 2,700-4,699, never tuned on, raised 15 alarms
# in 2,000 clips, 12 after the T3 duty rule (found on seeds below 2,700), 10 with keyed channels;
# TV speech seeds 1,000-3,999 raised 9 in 3,000 (5 after the shared-pitch rule found on them),
# seeds 4,000-6,999 13 with or without it, 12 with keyed channels (looked at, not tuned on: 11
# are one voice at a low unit's pitch). The CO alarms of all those seeds (music 0-4,699, TV
# 0-6,999) showed what the centres rule (`alarms.Pattern._centres_keep_time`) checks; on seeds
# never looked at (music 4,700-6,699, TV 7,000-9,999) it took music from 9 alarms in 2,000 clips
# to 6, TV speech from 5 in 3,000 to 2. The per-beep fade rule (`alarms.ALARM_MAX_BEEP_FADE_DB`,
# chosen with music 6526 in view) took music to 5. Later fresh seeds (music 6,700-8,699, TV
# 10,000-12,999) raised 4 and 2; the glide rule (`alarms.T4_MAX_GLIDE_OCTAVES`, chosen with TV
# seed 10776 in view) took TV 7,000-12,999 from 4 to 3 and, on seeds never looked at, TV
# 13,000-15,999 from 1 (seed 15177) to 0. Later sessions ran music seeds up to 50,699 and TV
# speech seeds up to 67,999 (the notes say what each rule took on them): `bench lite`
# starts above them.
MUSIC_SEEDS_TUNED_ON = 50700
TV_SEEDS_TUNED_ON = 68000


def music_alone(seed: int, seconds: float = 12.0) -> np.ndarray:
    """The generator's music by itself, at 16 kHz, peak 0.3."""
    return _alone(synth_music(seconds, np.random.default_rng(seed)))


def tv_speech_alone(seed: int, seconds: float = 12.0) -> np.ndarray:
    """The generator's TV speech (voices over a little room noise) by itself, at 16 kHz, peak 0.3."""
    return _alone(synth_background("tv_speech", int(seconds * SYNTH_RATE), np.random.default_rng(seed)))


def _alone(sound: np.ndarray) -> np.ndarray:
    """A background heard by itself: peak 0.3, at 16 kHz."""
    return resample_poly(0.3 * sound / np.max(np.abs(sound)), 1, SYNTH_RATE // 16_000).astype(np.float32)


def synth_whistle_tune(duration: float, rng: np.random.Generator) -> np.ndarray:
    """A whistled or piccolo tune: steady notes of 0.25-1 s around 2.1-3.5 kHz (a smoke alarm's
    piezo pitch), the same note often repeated, with rests: a tune's sustained notes at 3.1 kHz."""
    out = np.zeros(int(duration * SYNTH_RATE))
    scale = [2093.0, 2349.3, 2637.0, 3136.0, 3520.0]
    beat = 60.0 / rng.uniform(100, 130)
    note, t = float(rng.choice(scale)), 0.3
    while t < duration:
        if rng.random() > 0.5:  # half the time the same note again
            note = float(rng.choice(scale))
        length = beat * float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        tt = _t(length * 0.85)
        vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * tt)  # a player's vibrato
        phase = 2 * np.pi * np.cumsum(note * vibrato) / SYNTH_RATE
        _place(out, _ramp(np.sin(phase) + 0.1 * np.sin(2 * phase), 0.03), t, 0.5)
        t += length + (beat * float(rng.choice([0.5, 1.0])) if rng.random() < 0.3 else 0.0)  # sometimes a rest
    return out


def synth_chiptune(duration: float, rng: np.random.Generator) -> np.ndarray:
    """Square-wave melody of short staccato notes: the most beep-like music there is."""
    out = np.zeros(int(duration * SYNTH_RATE))
    scale = [523.3, 587.3, 659.3, 784.0, 880.0, 1046.5]
    step = 60.0 / rng.uniform(120, 160) / 2
    t = 0.0
    while t < duration:
        note = _ramp(_tone(*(2 * [float(rng.choice(scale))]), step * rng.choice([0.5, 0.8, 1.6]), "square"))
        _place(out, note, t, 0.3)
        t += step * rng.choice([1, 1, 2])
    return out


def _cadence(out: np.ndarray, make, on_off: list[float], start: float, until: float) -> None:
    """Repeat a sound pattern: on_off = [on, off, on, off, ...] seconds."""
    t = start
    while t < until:
        for i in range(0, len(on_off), 2):
            _place(out, make(on_off[i]), t)
            t += on_off[i] + on_off[i + 1]


def _bark(rng: np.random.Generator) -> np.ndarray:
    d = rng.uniform(0.12, 0.25)
    t = _t(d)
    f0 = rng.uniform(350, 600) * np.linspace(1.2, 0.8, len(t))  # pitch falls through a bark
    phase = 2 * np.pi * np.cumsum(f0) / SYNTH_RATE
    voiced = sum(np.sin(h * phase) / h for h in range(1, 10))
    rough = _bandpass(rng.standard_normal(len(t)), 500, 3000)
    env = np.sin(np.pi * np.linspace(0, 1, len(t))) ** 0.5
    return (voiced + 0.8 * rough) * env


def synth_negative(name: str, duration: float, rng: np.random.Generator) -> np.ndarray:
    """A sound that is not an alarm, at a realistic level (peak around -6 dBFS)."""
    out = np.zeros(int(duration * SYNTH_RATE))
    if name == "speech":
        t = 0.3
        while t < duration - 1:
            line = espeak(str(rng.choice(SPEECH_LINES)), str(rng.choice(VOICES)), int(rng.integers(140, 180)))
            _place(out, line, t)
            t += len(line) / SYNTH_RATE + rng.uniform(0.4, 1.2)
    elif name == "music":
        out = synth_music(duration, rng)
    elif name == "chiptune":
        out = synth_chiptune(duration, rng)
    elif name == "phone_uk":  # 400+450 Hz, 0.4 on 0.2 off 0.4 on 2.0 off
        _cadence(out, lambda d: _ramp(_tone(400, 400, d) + _tone(450, 450, d)), [0.4, 0.2, 0.4, 2.0], 0.5, duration)
    elif name == "phone_us":  # 440+480 Hz, 2 s on 4 s off
        _cadence(out, lambda d: _ramp(_tone(440, 440, d) + _tone(480, 480, d)), [2.0, 4.0], 0.5, duration)
    elif name == "phone_trill":  # electronic ringer: 1.2/1.5 kHz alternating at 16 Hz, 1 s on 2 s off
        def trill(d: float) -> np.ndarray:
            t = _t(d)
            freq = np.where((t * 16).astype(int) % 2 == 0, 1200.0, 1500.0)
            return _ramp(np.sin(2 * np.pi * np.cumsum(freq) / SYNTH_RATE))

        _cadence(out, trill, [1.0, 2.0], 0.5, duration)
    elif name == "microwave":  # "done": three 0.3 s beeps at 2 kHz, 0.35 s apart; once more after 5 s
        for group in (0.5, 5.5):
            _cadence(out, lambda d: _ramp(_tone(2000, 2000, d, "square")), [0.3, 0.35] * 3, group, group + 1.9)
    elif name == "oven_timer":  # 0.2 s beeps every second until someone comes
        _cadence(out, lambda d: _ramp(_tone(2700, 2700, d, "piezo")), [0.2, 0.8], 0.5, duration)
    elif name == "dishwasher":  # a short melody of three falling notes, twice
        for start in (0.5, 4.0):
            for i, f in enumerate((1568.0, 1318.5, 1046.5)):
                _place(out, _ramp(_tone(f, f, 0.25)), start + i * 0.3)
    elif name == "reversing_beeper":  # a truck backing up: 1 kHz, 0.5 s on 0.5 s off, no pause (T3 without its pause)
        _cadence(out, lambda d: _ramp(_tone(1000, 1000, d, "square")), [0.5, 0.5], 0.5, duration)
    elif name == "sweep_beeper":  # a toy, a car alarm, an evacuation whoop: an octave sweep every ~second, no pause (T3's sweep without its pause)
        period = rng.uniform(0.9, 1.1)
        _cadence(out, lambda d: _ramp(_tone(800, 800 * 2 ** (d / 0.5), d)), [period / 2, period / 2], 0.5, duration)
    elif name == "fast_beeper":  # an appliance fault: 0.1 s on 0.1 s off, no pause (T4 without its pause)
        _cadence(out, lambda d: _ramp(_tone(3000, 3000, d, "piezo")), [0.1, 0.1], 0.5, duration)
    elif name == "metronome":  # 100 BPM: a click with a short 1.5 kHz ping
        click = _ramp(_tone(1500, 1500, 0.03), 0.001) * _decay(0.03, 0.01) + rng.standard_normal(int(0.03 * SYNTH_RATE)) * _decay(0.03, 0.003)
        _cadence(out, lambda d: click, [0.03, 0.57], 0.5, duration)
    elif name == "dog":
        t = 0.5
        while t < duration - 0.5:
            for _ in range(int(rng.integers(2, 5))):  # barks come in bursts
                _place(out, _bark(rng), t)
                t += rng.uniform(0.35, 0.7)
            t += rng.uniform(1.0, 2.5)
    elif name == "vacuum":
        out = _vacuum(len(out), rng)
    elif name == "door_slam":
        for at in (2.0, 6.5):
            _place(out, _slam(rng), at)
    elif name == "whistle_tune":
        out = synth_whistle_tune(duration, rng)
    elif name == "kettle":  # a whistling kettle: a rising continuous whistle
        _place(out, _ramp(_tone(1800, 2300, 5.0) * np.linspace(0.2, 1.0, 5 * SYNTH_RATE), 0.3), 1.5)
    else:
        raise ValueError(f"unknown negative {name!r}; choose one of {NEGATIVES}")
    return 0.5 * out / (np.max(np.abs(out)) + 1e-12)


def _slam(rng: np.random.Generator) -> np.ndarray:
    thump = np.sin(2 * np.pi * 70 * _t(0.4)) * _decay(0.4, 0.08)
    crack = rng.standard_normal(int(0.4 * SYNTH_RATE)) * _decay(0.4, 0.03)
    return thump + 0.7 * crack


def _vacuum(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SYNTH_RATE
    motor = sum(np.sin(2 * np.pi * 180 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
    whine = 0.15 * np.sin(2 * np.pi * 1850 * t)  # the fan's blade-pass whine: continuous and tonal
    return _colored_noise(n, rng, 1.5) + 0.3 * motor + whine


def synth_background(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Household background, normalised to unit RMS."""
    if name == "fan":
        out = _colored_noise(n, rng, 1.0)
    elif name == "vacuum":
        out = _vacuum(n, rng)
    elif name == "kitchen":  # room tone, clatter, dish clinks, a running tap
        out = 0.5 * _colored_noise(n, rng, 1.0) + 0.4 * _bandpass(rng.standard_normal(n), 1000, 6000)
        for _ in range(int(n / SYNTH_RATE * 1.5)):
            at = rng.uniform(0, n / SYNTH_RATE)
            if rng.random() < 0.5:  # a clink: short, decaying, tonal
                f = rng.uniform(2000, 5000)
                _place(out, _tone(f, f, 0.3) * _decay(0.3, 0.05), at, 2.0)
            else:
                _place(out, rng.standard_normal(int(0.05 * SYNTH_RATE)) * _decay(0.05, 0.01), at, 2.5)
    elif name == "tv_speech":
        out = synth_negative("speech", n / SYNTH_RATE, rng)[:n] + 0.05 * _colored_noise(n, rng, 1.0)
    elif name == "music":
        out = synth_music(n / SYNTH_RATE, rng)[:n]
    else:
        raise ValueError(f"unknown background {name!r}; choose one of {BACKGROUNDS}")
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def room_impulse(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room: direct sound, then exponentially decaying diffuse reflections."""
    n = int(rt60 * 1.2 * SYNTH_RATE)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (rt60 * SYNTH_RATE))
    tail[: int(0.003 * SYNTH_RATE)] = 0  # first reflections arrive after a few ms
    ir = 0.5 * tail / np.sqrt(np.sum(tail**2))
    ir[0] = 1.0
    return ir


def negative_in_background(name: str, background: str, snr_db: float, rt60: float, seed: int, duration: float = 12.0) -> np.ndarray:
    """A negative in a room (`rt60` s, 0: none) over a household background at `snr_db`, at 16 kHz.

    The background's level is set against the negative's sounding part (its beeps, not
    the silence between them), as an alarm's is.
    """
    rng = np.random.default_rng(seed)
    x = synth_negative(name, duration, rng)
    if rt60 > 0:
        x = fftconvolve(x, room_impulse(rt60, rng))[: len(x)]
    power = np.mean(x[np.abs(x) > 1e-3] ** 2)
    mix = x + synth_background(background, len(x), rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return resample_poly(mix, 1, SYNTH_RATE // 16_000).astype(np.float32)


# --- Rendering and delivery -----------------------------------------------------


def render(spec: ClipSpec) -> tuple[np.ndarray, dict]:
    """The clip at SYNTH_RATE (mono, before delivery) and its truth."""
    rng = np.random.default_rng(spec.seed)
    n = int(spec.duration_s * SYNTH_RATE)
    truth: dict = {"kind": spec.kind, "label": spec.label}
    level_from = None  # what the clip's level is set from, when not the audio itself
    if spec.kind in ("alarm", "background"):
        sound, beeps = alarm_pattern(spec.label, spec.carrier, spec.duration_s - spec.lead_s, rng)
        on_mask = np.zeros(len(sound), dtype=bool)
        for on, off in beeps:
            on_mask[int(on * SYNTH_RATE) : int(off * SYNTH_RATE)] = True
        sound_power = np.mean(sound[on_mask] ** 2)
        if spec.announced:
            _announce(sound, beeps, spec.label)
        if spec.reverb_rt60 > 0:
            sound = fftconvolve(sound, room_impulse(spec.reverb_rt60, rng))[: len(sound)]
        fg = np.zeros(n)
        _place(fg, sound, spec.lead_s)
        bg = synth_background(spec.background, n, rng)
        bg *= np.sqrt(sound_power / 10 ** (spec.snr_db / 10))  # background RMS for the SNR
        mix = fg + bg
        if spec.kind == "background":
            mix, level_from = bg, mix
        else:
            truth.update(start=spec.lead_s, beeps=[(spec.lead_s + a, spec.lead_s + b) for a, b in beeps])
    elif spec.kind == "negative":
        mix = synth_negative(spec.label, spec.duration_s, rng)
        if spec.reverb_rt60 > 0:
            mix = fftconvolve(mix, room_impulse(spec.reverb_rt60, rng))[: len(mix)]
        mix = mix + 0.003 * synth_background("fan", n, rng)[: len(mix)]
    elif spec.kind in ("speech", "wake"):
        mix = 0.002 * synth_background("fan", n, rng)
        segments = []
        at = spec.lead_s
        for text in spec.text.split("|"):
            voice = VOICES[spec.seed % len(VOICES)] if spec.kind == "speech" else "en-us"
            words = espeak(text, voice, 150)
            _place(mix, 0.3 * words / np.max(np.abs(words)), at)
            on, off = _active_span(words)
            segments.append((at + on, at + off))
            at += len(words) / SYNTH_RATE + (1.5 if spec.kind == "speech" else 0.15)
        truth.update(segments=segments, text=spec.text)
    else:
        raise ValueError(f"unknown clip kind {spec.kind!r}")
    level_from = mix if level_from is None else level_from
    if spec.clip_level > 0:
        scale = np.max(np.abs(level_from))
        mix, level_from = (np.clip(x / scale, -spec.clip_level, spec.clip_level) / spec.clip_level for x in (mix, level_from))
    peak = np.max(np.abs(level_from)) + 1e-12
    return (0.7 * mix / peak).astype(np.float32), truth


def _active_span(x: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms frame within 35 dB of the loudest: when speech really starts and stops."""
    hop = SYNTH_RATE // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = np.flatnonzero(db > db.max() - 35)
    return active[0] * hop / SYNTH_RATE, (active[-1] + 1) * hop / SYNTH_RATE


def deliver(audio: np.ndarray, delivery: Delivery, path: Path, seed: int = 0) -> None:
    """Write `audio` (mono, SYNTH_RATE) to `path` as the delivery says, through sox/ffmpeg."""
    if delivery.channels == 2:  # a second mic: a little quieter, its own hiss
        rng = np.random.default_rng(seed + 1)
        audio = np.stack([audio, 0.8 * audio + 0.002 * rng.standard_normal(len(audio))], axis=1)
    raw = np.ascontiguousarray(audio, dtype="<f4").tobytes()
    src = ["-t", "f32", "-r", str(SYNTH_RATE), "-c", str(delivery.channels), "-"]
    if delivery.codec == "mp3":
        ffmpeg = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(SYNTH_RATE), "-ac", str(delivery.channels), "-i", "-"]
        kbps = "32k" if delivery.rate <= 16_000 else "96k"
        subprocess.run([*ffmpeg, "-ar", str(delivery.rate), "-c:a", "libmp3lame", "-b:a", kbps, str(path)], input=raw, check=True, capture_output=True)
        return
    effects = ["rate", "-v", str(delivery.rate)]
    if delivery.codec == "phone":
        effects += ["sinc", "300-3400"]
    elif delivery.codec != "wav":
        raise ValueError(f"unknown codec {delivery.codec!r}")
    subprocess.run(["sox", "-V1", *src, "-b", "16", str(path), *effects], input=raw, check=True, capture_output=True)


def materialize(spec: ClipSpec, cache_dir: Path) -> Clip:
    """Render and deliver `spec` once; later calls reuse the cached file."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    ext = "mp3" if spec.delivery.codec == "mp3" else "wav"
    path = cache_dir / f"{spec.name}-{spec.key()}.{ext}"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return Clip(spec, path, json.loads(meta.read_text()))
    audio, truth = render(spec)
    tmp = path.with_name("tmp-" + path.name)
    deliver(audio, spec.delivery, tmp, spec.seed)
    tmp.replace(path)
    meta.write_text(json.dumps(truth))
    return Clip(spec, path, truth)


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "audio-interaction-lite-testset"


# --- The sets -------------------------------------------------------------------

RATES = (8_000, 16_000, 48_000)


def announced(specs: list[ClipSpec]) -> list[ClipSpec]:
    """The same alarm clips from a combination alarm that speaks in its pauses (ANNOUNCEMENTS)."""
    return [replace(spec, name=f"{spec.name}-announced", announced=True) for spec in specs]


def alarm_specs(stress: bool = False, carriers: tuple[str, ...] = CARRIERS) -> list[ClipSpec]:
    """Every alarm x carrier x rate at +20 and -5 dB SNR, plus mid SNRs, with degradations cycling.

    Down to 0 dB the background is any household sound; at -5 dB it is a
    noise-like one (kitchen, vacuum, fan). `stress=True` gives the same clips at
    -5 dB under the tonal backgrounds (TV speech, music) instead: louder than
    the alarm and tonal themselves, the hardest case, measured by the benchmark.
    """
    specs = []
    i = k8 = 0
    for label in ALARM_KINDS:
        for carrier in carriers:
            for snr in (-5.0,) if stress else (20.0, 10.0, 0.0, -5.0):
                backgrounds = BACKGROUNDS if snr > -5 else TONAL_BACKGROUNDS if stress else NOISE_BACKGROUNDS
                rates = RATES if snr in (20.0, -5.0) else (RATES[i % 3],)
                for rate in rates:
                    i += 1
                    if rate == 8_000:
                        k8 += 1
                    codec = ("wav", "phone", "mp3")[k8 % 3] if rate == 8_000 else ("wav", "mp3", "wav")[i % 3]
                    if carrier == "3100" and codec == "phone" or carrier == "sweep_piezo" and codec == "phone":
                        codec = "wav"  # the phone band stops at 3.4 kHz: that alarm would not be there to hear
                    delivery = Delivery(rate, 1 + i % 2, codec)
                    specs.append(
                        ClipSpec(
                            name=f"{label}-{carrier}-{snr:+.0f}dB-{delivery.tag}" + ("-stress" if stress else ""),
                            kind="alarm",
                            label=label,
                            carrier=carrier,
                            background=backgrounds[i % len(backgrounds)],
                            snr_db=snr,
                            # T4's 0.1 s gaps drown in a longer reverb tail (the limit of the detector: see bench).
                            reverb_rt60=(0.0, 0.3 if label == "smoke_alarm" else 0.2, 0.5 if label == "smoke_alarm" else 0.3)[i % 3],
                            clip_level=0.3 if i % 5 == 0 else 0.0,
                            lead_s=2.0 + (i % 7) * 0.23,
                            duration_s=alarm_clip_seconds(label),
                            seed=1000 + i,
                            delivery=delivery,
                        )
                    )
    return specs


def tonal_background_draw(seeds: int = 6, cycles: int = 1) -> list[ClipSpec]:
    """Every alarm x carrier under TV speech and music at -5 and 0 dB, `seeds` draws of each (16 kHz mono wav).

    The stress set holds one or two clips per alarm, carrier and tonal background; this
    wider draw measures how often a first cycle is found in time there (`bench lite`), and
    with `cycles` > 1 (the alarm sounding that many cycles) how often it is found at all.
    """
    specs = []
    for label in ALARM_KINDS:
        for carrier in CARRIERS:
            for background in TONAL_BACKGROUNDS:
                for snr in (-5.0, 0.0):
                    for k in range(seeds):
                        specs.append(ClipSpec(
                            name=f"{label}-{carrier}-{background}-{snr:+.0f}dB-draw{k}", kind="alarm", label=label, carrier=carrier,
                            background=background, snr_db=snr, lead_s=2.0 + (k % 7) * 0.23,
                            duration_s=alarm_clip_seconds(label, cycles), seed=50_000 + k,
                        ))
    return specs


def low_unit_draw(seeds: int = 4) -> list[ClipSpec]:
    """Low-frequency units (LOW_UNIT_CARRIERS) under TV speech, music and a kitchen at -5 and 0 dB, `seeds` draws each, every other in a room of RT60 0.3 s.

    Drawn apart from the seeds the rules were tuned on (`bench lite`): a 520 Hz sounder shares its
    pitch with a voice's harmonics and with the notes of much music (C5 is 523 Hz).
    """
    specs = []
    for label in ALARM_KINDS:
        for carrier in LOW_UNIT_CARRIERS:
            for background in ("tv_speech", "music", "kitchen"):
                for snr in (-5.0, 0.0):
                    for k in range(seeds):
                        specs.append(ClipSpec(
                            name=f"{label}-{carrier}-{background}-{snr:+.0f}dB-low{k}", kind="alarm", label=label, carrier=carrier,
                            background=background, snr_db=snr, reverb_rt60=(0.0, 0.3)[k % 2], lead_s=2.0 + k * 0.29,
                            duration_s=alarm_clip_seconds(label), seed=90_000 + k,
                        ))
    return specs


REVERB_RT60S = (0.3, 0.5, 0.7, 1.0)  # a furnished room to a tiled hall or stairwell


def reverberant_draw(seeds: int = 3) -> list[ClipSpec]:
    """Every alarm x carrier in rooms of RT60 0.3-1 s, over a fan (+10 dB), a kitchen (0 dB) and TV speech (+5 dB), `seeds` draws each.

    The test sets' rooms reach RT60 0.5 s for a smoke alarm and 0.3 s for a CO alarm; this
    draw (`bench lite`) measures how a first cycle is found in livelier rooms as well.
    """
    specs = []
    for rt60 in REVERB_RT60S:
        for label in ALARM_KINDS:
            for carrier in CARRIERS:
                for background, snr in (("fan", 10.0), ("kitchen", 0.0), ("tv_speech", 5.0)):
                    for k in range(seeds):
                        specs.append(ClipSpec(
                            name=f"{label}-{carrier}-{background}-rt{rt60}-draw{k}", kind="alarm", label=label, carrier=carrier,
                            background=background, snr_db=snr, reverb_rt60=rt60, lead_s=2.0 + (k % 7) * 0.23,
                            duration_s=alarm_clip_seconds(label), seed=70_000 + k,
                        ))
    return specs


def negative_specs() -> list[ClipSpec]:
    """Every negative once, music (the likeliest false alarm) at four more tempi and keys, and a trill in two rooms."""
    out = []
    for i, name in enumerate(NEGATIVES + ("music",) * 4 + ("chiptune",) * 2):
        delivery = Delivery(RATES[i % 3], 1 + i % 2, "mp3" if i % 4 == 3 else "wav")
        out.append(ClipSpec(name=f"neg-{name}-{i}-{delivery.tag}", kind="negative", label=name, duration_s=12.0, seed=2000 + i, delivery=delivery))
    # In a reverberant room a trill's bursts of one tone smear into beeps of T4's size and rate.
    for k, rt60 in enumerate((0.3, 0.5)):
        delivery = Delivery(RATES[k + 1], 1 + k, "wav")
        out.append(ClipSpec(name=f"neg-phone_trill-rt{rt60}-{delivery.tag}", kind="negative", label="phone_trill", reverb_rt60=rt60, duration_s=12.0, seed=2100 + k, delivery=delivery))
    return out


def speech_specs() -> list[ClipSpec]:
    return [
        ClipSpec(
            name=f"speech-{i}",
            kind="speech",
            text=SPEECH_LINES[i] + "|" + SPEECH_LINES[(i + 3) % len(SPEECH_LINES)],
            lead_s=1.5,
            duration_s=14.0,
            seed=3000 + i,
        )
        for i in range(3)
    ]


def wake_specs(wake_word: str = "okay nabu") -> list[ClipSpec]:
    """A wake word, then a home command: the request the engine should transcribe."""
    return [
        ClipSpec(name=f"wake-{i}", kind="wake", label=wake_word, text=f"{wake_word}|{cmd}", lead_s=1.0, duration_s=7.0, seed=4000 + i)
        for i, cmd in enumerate(COMMANDS)
    ]


def build(specs: list[ClipSpec], cache_dir: Path | None = None) -> list[Clip]:
    cache_dir = cache_dir or default_cache_dir()
    return [materialize(spec, cache_dir) for spec in specs]
