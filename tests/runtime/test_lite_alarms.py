"""Lite engine alarms on the generated test set (model_runtime.lite.testset).

T3 (smoke) and T4 (CO) at 520 Hz, 3.1 kHz and two sweeps; reverb, clipping,
mp3 and phone-band delivery at 8, 16 and 48 kHz, mono and stereo, mixed into
household backgrounds from +20 to -5 dB SNR; the files go through
`load_audio` as any user file would. Negatives: speech, music, phones,
appliance beeps, a metronome, a dog, a vacuum, a door slam, a kettle.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from model_runtime import constants as c
from model_runtime.audio import load_audio
from model_runtime.engine import EngineOptions, run_stream
from model_runtime.lite import LiteEngine
from model_runtime.lite import testset as ts
from model_runtime.lite.alarms import T3, T4, AlarmDetector, Beep, alarm_like, direct_parts, level_fade
from model_runtime.lite.loudness import LoudNoiseDetector


@pytest.fixture(scope="session")
def testset_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lite-testset")


@pytest.fixture(scope="session")
def alarm_clips(testset_dir):
    return ts.build(ts.alarm_specs(), testset_dir)


@pytest.fixture(scope="session")
def negative_clips(testset_dir):
    return ts.build(ts.negative_specs(), testset_dir)


def sound_starts(events, label=None):
    return [e for e in events if e.type == c.EVENT_SOUND and e.data["end"] is None and (label is None or e.data["label"] == label)]


def run_alarms(path):
    return run_detector(AlarmDetector(), path)


def run_detector(detector, path):
    """Events of one detector over a file fed in 0.1 s pieces, as a stream feeds it."""
    return feed_detector(detector, load_audio(path))


def feed_detector(detector, audio):
    found = []
    for i in range(0, len(audio), 1_600):
        found += detector.process(audio[i : i + 1_600])
    return found + detector.finish()


def test_testset_covers_the_required_conditions(alarm_clips):
    specs = [clip.spec for clip in alarm_clips]
    for label in ts.ALARM_KINDS:
        for carrier in ts.CARRIERS:
            for rate in ts.RATES:
                assert any(s.label == label and s.carrier == carrier and s.delivery.rate == rate and s.snr_db == -5 for s in specs)
    assert {s.delivery.channels for s in specs} == {1, 2}
    assert {s.delivery.codec for s in specs} == {"wav", "mp3", "phone"}
    assert any(s.reverb_rt60 > 0 for s in specs) and any(s.clip_level > 0 for s in specs)


def test_every_alarm_is_found_within_one_cycle(alarm_clips):
    misses = []
    for clip in alarm_clips:
        events = run_alarms(clip.path)
        label = clip.spec.label
        hits = sound_starts(events, label)
        if not ts.found_in_time(clip, hits):
            misses.append((clip.spec.name, hits[0].t - clip.truth["start"] if hits else None))
            continue
        # The other alarm is never claimed, and the urgent response comes with the detection.
        other = [l for l in c.ALARM_LABELS if l != label]
        assert not sound_starts(events, other[0]), clip.spec.name
        responses = [e for e in events if e.type == c.EVENT_RESPONSE]
        assert responses and responses[0].t == hits[0].t and responses[0].data["urgent"] is True
        assert responses[0].data["emotion"] == "urgent" and responses[0].data["final"] is True
    assert not misses, f"{len(misses)} of {len(alarm_clips)} alarms missed or late: {misses}"


# The stress set: -5 dB under TV speech or music, louder and tonal themselves. Every clip
# must be found from its own beeps, among them a 520 Hz T4 whose beeps a voice hides in
# different harmonics (no one channel hears the whole group: the sounder's harmonics joined
# do), and a sweeping piezo's T4 whose beeps music sends to two channels, three to one and
# one to the other (its channels joined find it; it used to be "found" only from legato
# notes of the music in its pause, which raised the alarm by themselves).
def test_alarms_under_tv_speech_and_music_at_minus_5_db(testset_dir):
    specs = ts.alarm_specs(stress=True)
    assert len(specs) == 24 and {s.background for s in specs} == set(ts.TONAL_BACKGROUNDS)
    assert not first_cycle_misses(ts.build(specs, testset_dir))


# An alarm already sounding when a stream opens (the add-on restarted, a room connected mid-alarm)
# counts from its first beep: a stream's floor starts at silence. (Started from what the stream has
# heard, as a keyed channel's is, 10 of these 24 were found a cycle late: every T4 whose first beep
# the stream's first frame heard.)
def test_an_alarm_sounding_as_the_stream_opens_is_found_within_one_cycle(testset_dir):
    specs = [
        ts.ClipSpec(
            name=f"{label}-{carrier}-{background}-at-stream-start", kind="alarm", label=label, carrier=carrier, background=background,
            snr_db=snr_db, lead_s=0.0, duration_s=ts.alarm_clip_seconds(label) - 2.5, seed=1,
        )
        for label in ts.ALARM_KINDS
        for carrier in ("520", "3100", "sweep_piezo", ts.SPEAKER_CARRIER)
        for background, snr_db in (("fan", 20.0), ("tv_speech", 0.0), ("music", 0.0))
    ]
    assert not first_cycle_misses(ts.build(specs, testset_dir))


def first_cycle_misses(clips) -> list:
    """(name, delay) of the clips whose alarm was not found within its first cycle from its own beeps, or that raised the other alarm."""
    misses = []
    for clip in clips:
        events = run_alarms(clip.path)
        hits = sound_starts(events, clip.spec.label)
        wrong = [e for e in sound_starts(events) if e.data["label"] in c.ALARM_LABELS and e.data["label"] != clip.spec.label]
        if not ts.found_in_time(clip, hits) or wrong:
            misses.append((clip.spec.name, hits[0].t - clip.truth["start"] if hits else None))
    return misses


# A combination alarm speaks in each pause ("Fire! Fire!", "Warning! Carbon monoxide!"), as loud
# as its beeps: its words are no next beep. (A sweeping sounder's pause was taken away by the
# spoken "Fire!" gliding up at the sweep's rate, 11 dB under its beeps.) Every clip of the main set.
def test_a_combination_alarms_spoken_warning_leaves_its_pause(testset_dir):
    assert not first_cycle_misses(ts.build(ts.announced(ts.alarm_specs()), testset_dir))


# A real 520 Hz unit: an asymmetric square (30 % duty: even harmonics too) through a small
# speaker that rolls off below ~700 Hz, so its 2nd harmonic (~1040 Hz) is its loudest. Every
# condition of the main set.
def test_a_low_frequency_unit_through_a_small_speaker_is_found_within_one_cycle(testset_dir):
    specs = ts.alarm_specs(carriers=(ts.SPEAKER_CARRIER,))
    assert len(specs) == 16
    assert not first_cycle_misses(ts.build(specs, testset_dir))


# The same unit under TV speech and music at -5 dB (the stress set's conditions): the smoke alarm at
# 48 kHz under music was missed until keyed channels heard a 64 ms spectrum.
def test_a_low_frequency_unit_through_a_small_speaker_is_found_under_tv_and_music_at_minus_5_db(testset_dir):
    specs = ts.alarm_specs(stress=True, carriers=(ts.SPEAKER_CARRIER,))
    assert len(specs) == 6
    assert not first_cycle_misses(ts.build(specs, testset_dir))


# A unit whose square has a 25 % duty cycle, straight from its sounder: its 2nd harmonic nearly
# as strong as its fundamental, a 4th none. Every condition of the main set. (`bench lite` also
# draws the low-frequency units apart from the tuned seeds, where they do worse under music.)
def test_a_low_frequency_unit_with_strong_even_harmonics_is_found_within_one_cycle(testset_dir):
    specs = ts.alarm_specs(carriers=(ts.PULSE_CARRIER,))
    assert len(specs) == 16
    assert not first_cycle_misses(ts.build(specs, testset_dir))


# Under TV speech at -5 dB the speaker unit's fundamental is masked, and its 2nd harmonic, beginning
# with the fundamental an octave below on every beep, was taken for a played note's partial.
def test_a_low_frequency_units_second_harmonic_is_no_notes_overtone(testset_dir):
    specs = [s for s in ts.alarm_specs(stress=True, carriers=(ts.SPEAKER_CARRIER,)) if s.name == "smoke_alarm-520_speaker--5dB-16kmo-wav-stress"]
    assert [s.background for s in specs] == ["tv_speech"]
    assert not first_cycle_misses(ts.build(specs, testset_dir))


def draw_clip_found_in_time(testset_dir, name: str, draw: list | None = None) -> bool:
    """Whether the alarm of one clip of a `bench lite` draw (the wider draw unless given) is found within its first cycle."""
    (clip,) = ts.build([spec for spec in (draw or ts.tonal_background_draw()) if spec.name == name], testset_dir)
    return ts.found_in_time(clip, sound_starts(run_alarms(clip.path), clip.spec.label))


# A smoke alarm sweeping up an octave per beep, under music and TV speech (the wider draw of
# `bench lite`): a wide channel's loudest tone flips between the sweep and the notes it crosses,
# so no channel hears a beep whole, and the first cycle of each of these was missed (under music
# such an alarm was found in 1 of 12 draws, and in 7 within three cycles). The narrow channels'
# rising pieces, chained, are the sweep's beeps.
@pytest.mark.parametrize(
    "name",
    [
        "smoke_alarm-sweep_octave-music--5dB-draw0",
        "smoke_alarm-sweep_octave-music--5dB-draw4",
        "smoke_alarm-sweep_octave-music-+0dB-draw2",
        "smoke_alarm-sweep_octave-tv_speech--5dB-draw3",
    ],
)
def test_a_sweeping_smoke_alarm_under_music_is_found_from_its_rising_pieces(testset_dir, name):
    assert draw_clip_found_in_time(testset_dir, name)


# A 520 Hz unit under music (the low-unit draw of `bench lite`, and the wider draw): a chord's notes a
# few semitones either side of the alarm fill the neighbours its bin must stand above, so no channel
# found its beeps salient for more than a frame or two, and these first cycles were missed (11 of the
# low-unit draw's 28 misses). Its own bin still rises 20-25 dB at each beep: a keyed channel hears it.
# But a 520 Hz unit lies between two bins of the 32 ms spectrum (500 and 531 Hz), and a note a semitone
# or two above fills the nearer: its keyed bin was a spectral peak in 55-76 % of its beeps' frames, and
# the last four first cycles were missed. Keyed channels hear a 64 ms spectrum (15.6 Hz bins), where the
# unit's own bin is a peak in 86-100 % of them (`tonal.KEYED_N_FFT`).
@pytest.mark.parametrize(
    "name",
    [
        "smoke_alarm-520_speaker-music--5dB-low0",
        "smoke_alarm-520_pulse-music--5dB-low3",
        "smoke_alarm-520-music-+0dB-low3",
        "smoke_alarm-520-kitchen--5dB-low3",
        "smoke_alarm-520-music--5dB-low1",
        "smoke_alarm-520_speaker-music--5dB-low2",
        "smoke_alarm-520_pulse-music--5dB-low2",
        "smoke_alarm-520_pulse-tv_speech--5dB-low2",
    ],
)
def test_a_low_frequency_unit_under_chords_is_heard_by_its_bins_keying(testset_dir, name):
    assert draw_clip_found_in_time(testset_dir, name, ts.low_unit_draw())


# A low unit's CO alarm under music or TV speech at -5 dB: its 0.1 s beeps are heard whole in its own
# fine bin only, and keyed channels found T3 groups only, so each of these first cycles was missed
# (the wider draw's 520 Hz CO alarms under music and TV speech at -5 dB: 6 of 12 found, now 12). A
# keyed channel's T4 group must be a tone keyed in its bin (`alarms.keyed_unit_beeps`).
@pytest.mark.parametrize(
    "name, draw",
    [
        ("co_alarm-520-music--5dB-draw0", "tonal"),
        ("co_alarm-520-music--5dB-draw1", "tonal"),
        ("co_alarm-520-music--5dB-draw2", "tonal"),
        ("co_alarm-520-music--5dB-draw3", "tonal"),
        ("co_alarm-520-music--5dB-draw4", "tonal"),
        ("co_alarm-520-tv_speech--5dB-draw0", "tonal"),
        ("co_alarm-520-tv_speech--5dB-draw1", "tonal3"),
        ("co_alarm-520-music--5dB-low3", "low"),
        ("co_alarm-520_pulse-music--5dB-low2", "low"),
        ("co_alarm-520_pulse-music--5dB-low3", "low"),
    ],
)
def test_a_low_units_co_alarm_under_music_or_tv_is_heard_by_its_bins_keying(testset_dir, name, draw):
    specs = {"tonal": ts.tonal_background_draw, "tonal3": lambda: ts.tonal_background_draw(cycles=3), "low": ts.low_unit_draw}[draw]()
    assert draw_clip_found_in_time(testset_dir, name, specs)


# Keyed channels, each one fine bin, hear more than their units: a note's partial near a group's
# pitch in the slot before it (not a reversing beeper's hidden beep: `_run_before` asks them only
# of their own groups, as `_heard_again` does), a sweep crossing their bin within a T4 beep, a voice's
# scrap at 500 Hz beside a unit's 523 Hz fundamental. `_overtone_of_notes` places their tones to their
# own 15.6 Hz bin (a note's partial is at a ratio within it; a unit's harmonic is what lies within
# it). Each of these was found, then lost while keyed channels counted there as the others do.
@pytest.mark.parametrize(
    "name, draw",
    [
        ("smoke_alarm-520-music-+0dB-draw3", "tonal"),
        ("co_alarm-sweep_octave-music--5dB-draw0", "tonal"),
        ("smoke_alarm-520_pulse-kitchen--5dB-low3", "low"),
        ("smoke_alarm-520_pulse-tv_speech--5dB-low3", "low"),
    ],
)
def test_a_keyed_channel_hears_no_note_and_no_run_for_another_channel(testset_dir, name, draw):
    assert draw_clip_found_in_time(testset_dir, name, ts.tonal_background_draw() if draw == "tonal" else ts.low_unit_draw())


# In a lively room a CO alarm's last beep comes back 0.12-0.13 s later as a "beep" 10-12 dB weaker
# (its tail): these first cycles were lost while it broke the pause (PAUSE_ECHO_DB).
@pytest.mark.parametrize("name", ["co_alarm-3100-fan-rt0.7-draw1", "co_alarm-3100-tv_speech-rt1.0-draw1"])
def test_a_beeps_echo_does_not_break_the_pause(testset_dir, name):
    assert draw_clip_found_in_time(testset_dir, name, ts.reverberant_draw())


# A tiled kitchen: a glass's clink (0.09 s at 3,250 Hz, as loud as the alarm) 0.06 s before a
# 3.1 kHz unit's first beep was joined to it as one beep at their mean pitch, 3,172 Hz, off the
# unit's: the first cycle was lost (`_two_held_pitches`). From the reverberant draw's seed 5.
def test_a_clink_before_a_beep_is_not_joined_to_it(testset_dir):
    assert draw_clip_found_in_time(testset_dir, "smoke_alarm-3100-kitchen-rt0.5-draw5", ts.reverberant_draw(seeds=6))


def test_only_pieces_at_one_pitch_or_along_a_sweep_are_mended():
    """A dropout splits one fixed tone at its pitch, or a sweep along its way; two held pitches are two sounds."""
    def piece(on, off, freq_on, freq_off, peak=-20.0):
        return Beep(on, off, (freq_on + freq_off) / 2, 10.0, peak, 1.0, freq_on=freq_on, freq_off=freq_off)

    beep = piece(3.20, 3.67, 3094, 3094)
    # a 3.1 kHz unit's beep split by a dropout, its pieces a bin apart: one beep
    (mended,) = AlarmDetector._mend([piece(3.20, 3.40, 3094, 3094), piece(3.45, 3.67, 3125, 3125)], T3)
    assert (mended.on, mended.off) == (3.20, 3.67)
    # the clink before it, 156 Hz above (more than twice a fixed tone's 62 Hz): kept apart
    assert len(AlarmDetector._mend([piece(3.05, 3.14, 3250, 3250, -17.3), beep], T3)) == 2
    # a sweep split by a dropout: its later piece goes on where the first was heading
    (swept,) = AlarmDetector._mend([piece(0.0, 0.2, 2000, 2600), piece(0.25, 0.5, 2700, 3000)], T3)
    assert (swept.freq_on, swept.freq_off) == (2000, 3000)


# A keyed channel judges no other channel's pause: it hears a voice's harmonic at a 520 Hz unit's
# pitch in the pause as loud as a beep, and these first cycles were lost to it (a CO alarm under TV
# speech; a combination alarm speaking "Fire!" in its pauses).
@pytest.mark.parametrize(
    "name, draw",
    [
        ("co_alarm-520-tv_speech--5dB-low1", ts.low_unit_draw),
        ("smoke_alarm-520--5dB-48kst-wav-stress-announced", lambda: ts.announced(ts.alarm_specs(stress=True))),
    ],
    ids=["co-under-tv", "announced-smoke"],
)
def test_a_keyed_channel_does_not_break_another_channels_pause(testset_dir, name, draw):
    assert draw_clip_found_in_time(testset_dir, name, draw())


# A piezo's alarm under music with notes at its pitch (3.1 kHz, a piano note's partial): a note
# struck just before a beep carried on into it, and the channel heard one long beep of both,
# too long for the pattern. The alarm's beep rising over the note is a new beep.
@pytest.mark.parametrize("name", ["smoke_alarm-3100-music-+0dB-draw0", "co_alarm-3100-music-+0dB-draw2"])
def test_a_beep_rising_over_a_note_at_its_pitch_is_a_beep_of_its_own(testset_dir, name):
    assert draw_clip_found_in_time(testset_dir, name)


# A piezo's alarm under music whose melody, by chance, struck a note an octave below the alarm
# with each of its beeps (1.59 kHz under 3.1 kHz, 12 dB weaker; the background alone has the same
# notes): the group was taken for that note's octave partial. A note's lower partials are its
# louder ones; a tone that much weaker is another sound.
@pytest.mark.parametrize(
    "name",
    [
        "smoke_alarm-3100-music--5dB-draw2",
        "smoke_alarm-3100-music-+0dB-draw2",
        "smoke_alarm-sweep_piezo-music--5dB-draw2",
        "smoke_alarm-sweep_piezo-music-+0dB-draw2",
    ],
)
def test_a_weak_note_an_octave_below_does_not_make_an_alarm_a_notes_partial(testset_dir, name):
    assert draw_clip_found_in_time(testset_dir, name)


def test_a_beeps_fade_is_its_middle_halfs_trend_not_the_rooms():
    """A sounder's beep in a room: louder direct sound first, the room's steady level, then the reverberant tail
    falling (all part of the beep as measured): it holds its level. A struck note's level falls all through."""
    frame = 0.01
    times = [frame * (i + 1) for i in range(60)]  # a 0.6 s beep
    in_room = [-10.0 if t < 0.1 else -12.5 if t < 0.5 else -12.5 - 60.0 * (t - 0.5) for t in times]
    struck = [-10.0 - 14.0 * t for t in times]  # a piano's ~14 dB/s
    assert abs(level_fade(list(zip(times, in_room)), 0.0, 0.6)) < 1.0
    assert level_fade(list(zip(times, struck)), 0.0, 0.6) == pytest.approx(14.0 * 0.6, abs=0.1)
    assert level_fade(list(zip(times, [-x - 20.0 for x in struck])), 0.0, 0.6) == pytest.approx(-14.0 * 0.6, abs=0.1)


# A piezo's smoke alarm in a lively room (RT60 0.7-1 s, beyond the test sets' 0.5 s): each beep's
# level falls from its direct sound to the room's steady sum, and its reverberant tail is part of
# the beep as measured. A beep's fade taken over all of it made these look like struck notes.
@pytest.mark.parametrize("background, snr_db, rt60, seed", [("fan", 10.0, 1.0, 901), ("kitchen", 0.0, 0.7, 902)])
def test_a_smoke_alarm_in_a_lively_room_is_no_fading_note(testset_dir, background, snr_db, rt60, seed):
    spec = ts.ClipSpec(
        name=f"smoke_alarm-3100-{background}-rt{rt60}-{seed}", kind="alarm", label="smoke_alarm", carrier="3100",
        background=background, snr_db=snr_db, reverb_rt60=rt60, duration_s=9.0, seed=seed,
    )
    (clip,) = ts.build([spec], testset_dir)
    assert ts.found_in_time(clip, sound_starts(run_alarms(clip.path), "smoke_alarm"))


def test_a_beeps_direct_sound_parts_are_cut_at_the_rooms_plateau():
    """Two 0.1 s beeps whose gap a room filled to 8 dB under them (one beep as segmented): two parts.
    A steady beep whose level ripples 4 dB: one part, the whole beep."""
    frame = 0.01
    times = [frame * (i + 1) for i in range(40)]
    joined = [-12.0 if t <= 0.1 or 0.2 < t <= 0.3 else -20.0 for t in times]
    parts = direct_parts(list(zip(times, joined)), 0.0)
    assert [(round(on, 2), round(off, 2)) for on, off, _, _ in parts] == [(0.0, 0.1), (0.2, 0.3)]
    assert all(peak == -12.0 and sag == 0.0 for _, _, peak, sag in parts)
    rippling = [-12.0 - 4.0 * (i % 2) for i in range(40)]
    ((on, off, peak, _),) = direct_parts(list(zip(times, rippling)), 0.0)
    assert (on, off, peak) == (0.0, 0.4, -12.0)


# A piezo's CO alarm in a lively room (RT60 0.5-1 s; the test sets' CO rooms stop at 0.3 s): each
# 0.1 s beep's tail fills the next 0.1 s gap to 7-9 dB under the beeps, so two beeps (or all four)
# measured as one and the group was no T4. Their direct-sound parts are.
@pytest.mark.parametrize(
    "name",
    [
        "co_alarm-3100-fan-rt0.5-draw2",  # beeps joined in pairs
        "co_alarm-3100-kitchen-rt0.7-draw2",  # all four joined into one 0.7 s beep
        "co_alarm-3100-tv_speech-rt1.0-draw2",
    ],
)
def test_a_co_alarm_in_a_lively_room_is_found_from_its_direct_sound(testset_dir, name):
    assert draw_clip_found_in_time(testset_dir, name, ts.reverberant_draw())


def test_a_smoke_alarm_beep_that_a_tune_chops_at_t4s_pace_is_no_co_alarm():
    """The last beep of a smoke alarm's group dips 8 dB every 0.15 s (a tune's notes over it): its
    direct-sound parts, followed by the alarm's pause, would be a CO group. They are one smoke alarm beep."""
    rate, rng = 16_000, np.random.default_rng(5)
    audio = 0.003 * rng.standard_normal(int(9.0 * rate))
    t = np.arange(int(ts.T3_ON * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 3100.0 * t)
    chopped = np.where((t % 0.15) < 0.08, 1.0, 10 ** (-8.0 / 20))
    for k in range(ts.T3_BEEPS):
        start = int((2.0 + k * (ts.T3_ON + ts.T3_OFF)) * rate)
        audio[start : start + len(t)] += tone * (chopped if k == ts.T3_BEEPS - 1 else 1.0)
    labels = [e.data["label"] for e in sound_starts(feed_detector(AlarmDetector(), audio.astype(np.float32)))]
    assert labels == ["smoke_alarm"]


# Each alarm clip's background alone, at the level and delivery it has in the clip. The music
# of two clips once raised alarms by itself (a melody note's octave partial repeated at T3's
# rate; notes played legato at T4's), which the clips with their alarms hid.
def test_no_alarm_from_any_alarm_clips_background_alone(testset_dir):
    specs = [spec.background_alone() for spec in ts.alarm_specs() + ts.alarm_specs(stress=True)]
    raised = []
    for clip in ts.build(specs, testset_dir):
        labels = [e.data["label"] for e in sound_starts(run_alarms(clip.path)) if e.data["label"] in c.ALARM_LABELS]
        if labels:
            raised.append((clip.spec.name, labels))
    assert not raised, raised


# The music of the wider draw sounding three cycles (a CO alarm's clip) raised a smoke alarm by
# itself, 19 s in, in each of its 8 clips: a 1656 Hz partial repeated every 1.05 s, with a 1121 Hz
# note beginning with its first beep and a 3312 Hz partial with the next two, 9 dB apart, all at a
# 552 Hz unit's harmonic ratios, so exempt as a unit's own harmonics. A unit's harmonics begin with
# most of its beeps, as loud each time (UNIT_HARMONIC_DB). A metronome over music in a room gave
# the same.
def test_no_alarm_from_music_at_a_low_units_harmonic_ratios(testset_dir):
    spec = next(s for s in ts.tonal_background_draw(cycles=3) if s.name == "co_alarm-520-music--5dB-draw0").background_alone()
    clip = ts.materialize(spec, testset_dir)
    metronome = ts.negative_in_background("metronome", "music", 5.0, 0.5, 4)
    for audio in (load_audio(clip.path), metronome):
        assert not [e.to_dict() for e in sound_starts(feed_detector(AlarmDetector(), audio)) if e.data["label"] in c.ALARM_LABELS]


def test_no_alarm_on_any_negative_and_beeping_is_never_an_alarm(negative_clips):
    beeping_heard = set()
    for clip in negative_clips:
        events = run_alarms(clip.path)
        alarms = [e for e in sound_starts(events) if e.data["label"] in c.ALARM_LABELS]
        assert not alarms, f"false alarm on {clip.spec.name}: {[e.to_dict() for e in alarms]}"
        assert not [e for e in events if e.type == c.EVENT_RESPONSE], clip.spec.name
        if sound_starts(events, "beeping"):
            beeping_heard.add(clip.spec.label)
    # The hard ones are there: a trill in a reverberant room (its bursts smear into
    # T4-sized beeps), a tune's sustained notes at a piezo's pitch.
    assert {"whistle_tune", "phone_trill"} <= {clip.spec.label for clip in negative_clips}
    assert any(clip.spec.reverb_rt60 >= 0.5 and clip.spec.label == "phone_trill" for clip in negative_clips)
    # The repetitive appliance beeps are heard as what they are; music and phones are not beeping
    # (a note repeated on the beat, a trill's bursts: other sounds fill their gaps).
    assert set(ts.BEEPING_NEGATIVES) <= beeping_heard, set(ts.BEEPING_NEGATIVES) - beeping_heard
    assert not beeping_heard & {"music", "whistle_tune", "phone_trill", "phone_uk", "phone_us", "speech"}, beeping_heard


# A truck's reversing beeper (T3's rate, never a pause) under music or TV at 0 dB: where a
# note hides one beep, the three after it look like a T3 group after its pause. The beep
# before them still sounds in some channel (often joined to a note): the run goes on. In
# a kitchen a clink takes over the group's channel just as the next beep starts: the other
# channels hear that beep sounding.
@pytest.mark.parametrize(
    "background, snr_db, rt60, seed",
    [("music", 0.0, 0.0, 1), ("music", 0.0, 0.0, 2), ("music", 0.0, 0.5, 2), ("tv_speech", 0.0, 0.5, 2), ("kitchen", 5.0, 0.0, 3), ("kitchen", 5.0, 0.5, 7)],
)
def test_a_reversing_beeper_with_a_hidden_beep_is_no_smoke_alarm(background, snr_db, rt60, seed):
    audio = ts.negative_in_background("reversing_beeper", background, snr_db, rt60, seed)
    alarms = [e.to_dict() for e in sound_starts(feed_detector(AlarmDetector(), audio)) if e.data["label"] in c.ALARM_LABELS]
    assert not alarms


# A vacuum under music in a lively room: a 1,573 Hz partial at T3's pace, whose note's 781 Hz partial,
# an octave below, only a keyed channel heard. Keyed channels between a low unit's fundamental and its
# 2nd harmonic find no groups, but they still hear notes (`alarms.KEYED_GROUP_HZ`).
def test_a_partial_whose_note_only_a_keyed_channel_hears_is_no_smoke_alarm():
    audio = ts.negative_in_background("vacuum", "music", 5.0, 0.5, 50)
    alarms = [e.to_dict() for e in sound_starts(feed_detector(AlarmDetector(), audio)) if e.data["label"] in c.ALARM_LABELS]
    assert not alarms


# A sounder sweeping up an octave about once a second, never pausing (a toy, a car alarm, an
# evacuation whoop) is T3's sweeping carrier without its pause. The detector raised a smoke
# alarm on 68 of 80 such clips: the next sweep, still sounding when the pause was judged, had
# not reached the group's middle pitch yet; or a wide channel lost it to other sounds while the
# narrow channels heard it rising again. Seed 49 under music: a keyed channel at 891 Hz (between a
# low unit's fundamental and its 2nd harmonic, where keyed channels now find no groups) heard three
# 0.5-0.7 s tones at its bin, about a second apart, as a smoke alarm's beeps.
@pytest.mark.parametrize(
    "background, snr_db, rt60, seed",
    [("kitchen", 10.0, 0.0, 0), ("fan", 5.0, 0.5, 1), ("music", 0.0, 0.5, 3), ("tv_speech", 0.0, 0.0, 8), ("tv_speech", 0.0, 0.5, 7), ("music", 5.0, 0.5, 49)],
)
def test_a_sweep_repeated_without_a_pause_is_no_smoke_alarm(background, snr_db, rt60, seed):
    audio = ts.negative_in_background("sweep_beeper", background, snr_db, rt60, seed)
    alarms = [e.to_dict() for e in sound_starts(feed_detector(AlarmDetector(), audio)) if e.data["label"] in c.ALARM_LABELS]
    assert not alarms


# A note whistled with vibrato (~5.5 Hz) in a lively room swells and fades at T4's pace, so a
# held note is cut into "beeps" 0.18 s apart (or its one beep into direct-sound parts), and any
# four of them keep T4's time. What sounds on at the note's pitch just before or just after the
# four is the note going on: no pause. Fresh negative mixes (seeds 6-17) raised CO alarms on 6 of
# 72 whistled tunes, these 4 among them: the parts after the four had not been judged as breaking
# the pause, and a one-harmonic timeline, its f0 a bin off the note's wavering pitch, left out the
# beep before them. Seeds 32 and 33 (fresh negative mixes, seeds 30-41: a note at 2,093 Hz, 19 dB
# swells) raised CO alarms while only the latest beep before the four was asked whether it left them
# a pause: a weaker, shorter swell, with the note's first swell, as loud and as long as the four,
# 0.16 s before it (`no_pause_before`).
@pytest.mark.parametrize(
    "background, rt60, seed",
    [("kitchen", 0.5, 11), ("fan", 0.5, 11), ("tv_speech", 0.5, 11), ("tv_speech", 0.0, 16), ("fan", 0.5, 33), ("kitchen", 0.5, 33), ("music", 0.5, 32)],
)
def test_a_whistled_note_with_vibrato_is_no_co_alarm(background, rt60, seed):
    audio = ts.negative_in_background("whistle_tune", background, 5.0, rt60, seed)
    alarms = [e.to_dict() for e in sound_starts(feed_detector(AlarmDetector(), audio)) if e.data["label"] in c.ALARM_LABELS]
    assert not alarms


# A note whistled at 2,093 Hz lies just below a narrow channel's lowest bin: the channel hears its
# skirt, which the note's vibrato swings 6-7 dB at T4's pace, so its one beep fell into four
# direct-sound parts even in a dry room. Fresh negative mixes (seeds 30-41) raised CO alarms on it
# over a fan, a kitchen, music and TV speech until a beep's parts were cut from the bin beyond the
# channel's edge where that was the louder (`AlarmDetector._tone_levels`).
@pytest.mark.parametrize("background, seed", [("fan", 32), ("kitchen", 32), ("music", 40), ("tv_speech", 31)])
def test_a_whistled_note_beside_a_channel_is_no_co_alarm(background, seed):
    audio = ts.negative_in_background("whistle_tune", background, 5.0, 0.0, seed)
    alarms = [e.to_dict() for e in sound_starts(feed_detector(AlarmDetector(), audio)) if e.data["label"] in c.ALARM_LABELS]
    assert not alarms


# Music over a kitchen (negative mix seed 55, a dry room): a note's partial at 1,047 Hz, in and out of a
# keyed channel's bin four times at T4's pace, within 1 dB, each 0.04-0.08 s: a CO alarm while keyed
# channels found T4 groups of any four such pieces (`alarms.KEYED_T4_MIN_BEEP_S`).
def test_a_partial_passing_through_a_keyed_bin_is_no_co_alarm():
    audio = ts.negative_in_background("music", "kitchen", 5.0, 0.0, 55)
    alarms = [e.to_dict() for e in sound_starts(feed_detector(AlarmDetector(), audio)) if e.data["label"] in c.ALARM_LABELS]
    assert not alarms


def test_alarm_is_one_lasting_sound_with_start_and_end(testset_dir):
    spec = ts.ClipSpec(name="t3-long", kind="alarm", label="smoke_alarm", carrier="3100", snr_db=10.0, duration_s=16.0, seed=7)
    clip = ts.materialize(spec, testset_dir)
    audio = load_audio(clip.path)
    audio = np.concatenate([audio, np.zeros(8 * c.SAMPLE_RATE, dtype=np.float32)])  # then it stops
    stream = LiteEngine(EngineOptions()).open_stream()
    events = [e for e in run_stream(stream, audio) if e.type == c.EVENT_SOUND and e.data["label"] == "smoke_alarm"]
    assert [e.data["end"] is None for e in events] == [True, False], [e.to_dict() for e in events]
    start, end = events
    assert start.data["start"] == end.data["start"] and abs(start.data["start"] - clip.truth["start"]) < 0.15
    last_beep_off = clip.truth["beeps"][-1][1]
    assert abs(end.data["end"] - last_beep_off) < 0.3 and end.t < 16.0 + 8.0


def test_pieces_of_any_size_give_the_same_events(alarm_clips):
    clip = next(cl for cl in alarm_clips if cl.spec.label == "co_alarm" and cl.spec.snr_db == 0)
    audio = load_audio(clip.path)
    results = []
    for piece in (len(audio), 160, 1_037, 6_400):
        stream = LiteEngine(EngineOptions()).open_stream()
        results.append([e.to_dict() for e in run_stream(stream, audio, piece_samples=piece)])
    assert all(r == results[0] for r in results[1:])
    assert any(e["label"] == "co_alarm" for e in results[0] if e["type"] == "sound")


def test_streams_are_independent(alarm_clips):
    clip = next(cl for cl in alarm_clips if cl.spec.label == "smoke_alarm")
    alarm = load_audio(clip.path)
    quiet = np.zeros_like(alarm)
    engine = LiteEngine(EngineOptions())
    room_a, room_b = engine.open_stream(), engine.open_stream()
    heard_a, heard_b = [], []
    for i in range(0, len(alarm), 1_600):  # interleaved, as a server serves two rooms
        heard_a += room_a.feed(alarm[i : i + 1_600])
        heard_b += room_b.feed(quiet[i : i + 1_600])
    assert sound_starts(heard_a, "smoke_alarm") and not heard_b


def run_loudness(path):
    return run_detector(LoudNoiseDetector(), path)


def test_a_door_slam_is_one_loud_noise_and_beeps_are_none(negative_clips, alarm_clips):
    slams = next(clip for clip in negative_clips if clip.spec.label == "door_slam")  # slams at 2.0 s and 6.5 s
    events = [e for e in run_loudness(slams.path) if e.data["label"] == "loud_noise"]
    starts = [e for e in events if e.data["end"] is None]
    assert [round(e.data["start"], 1) for e in starts] == [2.0, 6.5], [e.to_dict() for e in events]
    assert len(events) == 4 and all(e.data["level_db"] > -30 for e in events)  # each: a start and an end
    # Beeps are as sudden and as loud, but tonal: the alarm detector's, never a loud noise.
    beepers = [clip for clip in negative_clips if clip.spec.label in ts.BEEPING_NEGATIVES]
    loud_alarms = [clip for clip in alarm_clips if clip.spec.snr_db == 20]
    for clip in beepers + loud_alarms:
        assert not run_loudness(clip.path), clip.spec.name


# Music alone (the generator's piano, bass and drums, 12 s, 16 kHz): of 150 seeds these raised an
# alarm before the detector knew a played note's octave partials (30, 85), ISO 8201's T3 period
# (49, 132) and that a T4 sounder is silent half the time (31, 56); these raised a CO alarm when a
# higher sounder's channels were first joined with a low sounder's leeway (0, 42, 111, 137, 141).
# Later seeds 252, 599 (a chord's partial fading 13-15 dB through each beep, as partials beat) and
# 615 (one swelling 21 dB) raised smoke alarms (ALARM_MAX_FADE_DB). Seeds 133 (a 781 Hz note's 3rd
# partial repeated every two beats, its 2nd and 4th partials beginning with it), 203 (the same note
# at T4's pace) and 685 (a 625 Hz note's 2nd partial, its 3rd and 4th with it) raised alarms until
# other partials than the one an octave below counted (NOTE_RATIOS). 303 (a partial near 2 kHz
# repeated at T3's pace; a 1031 Hz note that began with one of its beeps was taken for a 515 Hz
# unit's 2nd harmonic beside its 4th) raised a smoke alarm until a low unit's harmonic had to
# begin with most of the beeps (UNIT_HARMONIC_DB); 351 and 462 (two notes taking turns in a channel, its pitch moving in two
# beeps of three: taken for a sweep) until a sweeping sounder's beeps had to sweep alike; 329 (a
# 1312 Hz partial 1.19 s and 1.08 s apart) until a fixed tone's beeps had to keep ISO 8201's time
# within 0.05 s (T3_FIXED_TONE_MAX_INTERVAL_S); 179 (a 1 kHz partial, one of its three "beeps" beginning
# and ending at 1188 Hz: a note over it) until a fixed tone's beep had to begin or end at its pitch
# (`off_pitch`); 575 (a 2344 Hz partial at T4's pace, 0.17, 0.14 and 0.19 s apart: its four onsets
# span 0.50 s) until a T4 group had to span three of ISO 8201's periods (T4.span); 877 (a
# partial repeated at 135 BPM: three onsets 1.77 s apart) until a T3 group had to span two
# (T3.span); 2309 and 2562 (partials held 0.73 and 0.72 of their spacing: legato notes) until a
# T3 group's beeps had to leave it silent for 0.3 of each period (T3.max_duty); 1505 (a 1480 Hz
# partial's "beeps" 0.04-0.09 s long, their centres 0.29 s apart once) and 4351 (a 1969 Hz partial at
# 0.24 s a note: centres spanning 0.72 s) until a T4 group's centres had to keep ISO 8201's time
# (`Pattern._centres_keep_time`).
# 831 and 3880 (a pure 1094 Hz partial, one of its three "beeps" swelling 20-23 dB) until no beep of a
# fixed tone's group could swell or fade more than ALARM_MAX_BEEP_FADE_DB.
# 28557, 28737, 28805, 28919, 30224 and 30630 (a 2,963 Hz partial held through a beat, cut into
# four "beeps" at T4's pace as a 1,975 Hz partial and it took a channel from each other in turn)
# raised CO alarms until most of a fixed tone's beeps had to begin with their tone, not take the
# channel from another while it sounded as loud already (`Beep.sounded_before`). 29824, 29993 and
# 30238 (three "beeps" each stepping down from one note's partial to the next, 1,594 -> 1,312 Hz,
# taken for a falling sweep) raised smoke alarms until a sweep had to cross its bins one by one
# (`alarms.sweeps_bin_by_bin`).
# 31588, 33552 and 34600 (a 1,094 Hz note struck three times in the clip's first 2.5 s) raised smoke
# alarms while a keyed channel's floor started at silence, as the others' do: every spectral peak of
# its bin stood out by ~80 dB until the floor was known (`TonalTracker._hear_keyed`).
# 41472 and 43617 (a 969 Hz partial held 0.5-0.7 s three times at T3's pace, heard in a keyed channel
# at a low unit's 2nd harmonic) raised smoke alarms until a keyed channel's group had to begin without
# louder tones in other keyed bins on most of its beeps: each began with its chord's notes
# (`AlarmDetector._begun_with_louder_tones`).
# `bench lite` counts later seeds, which still raise some.
@pytest.mark.parametrize("seed", [30, 31, 49, 56, 85, 132, 0, 42, 111, 137, 141, 252, 599, 615, 133, 203, 685, 303, 351, 462, 329, 179, 575, 877, 2309, 2562, 1505, 4351, 831, 3880, 28557, 28737, 28805, 28919, 30224, 30630, 29824, 29993, 30238, 31588, 33552, 34600, 41472, 43617])
def test_music_alone_raises_no_alarm(seed):
    raised = [e.data["label"] for e in sound_starts(feed_detector(AlarmDetector(), ts.music_alone(seed))) if e.data["label"] in c.ALARM_LABELS]
    assert not raised


# Seed 488 of the generator's TV speech: a voice's scraps at 2.78 kHz, 0.05-0.08 s long, 0.14-0.17 s
# apart, raised a CO alarm (each interval inside T4's window) until the four onsets had to span 0.52 s.
# Seeds 1386, 1460, 1591 and 3360: scraps of a voice's harmonics gliding at 2.8-3.2 kHz, within 12 % of
# their median pitch but without a pitch all four shared, until a sweeping group's beeps had to share one.
# Seeds 41 and 296: a voice's harmonic at 500 and 438 Hz, keyed by its syllables at T4's pace, in a keyed
# channel (then one 31 Hz bin: the harmonic's wandering pitch read as one), were CO alarms had those
# channels found T4. Seeds 489, 632, 724, 728, 57949 and 58536: a voice's harmonic gliding through a fine
# keyed bin (500-1,016 Hz) four times at its syllables' pace raised CO alarms once keyed channels found T4
# groups, until such a group had to be a tone keyed in its bin (`alarms.keyed_unit_beeps`): the first
# four's pieces are 3.9-9.4 dB apart, the last two's short (median 0.06-0.07 s). Seed 63981: a 1,094 Hz
# harmonic keyed by four syllables, as steady and as long as a unit's beeps, each begun with louder
# harmonics in other keyed bins (`AlarmDetector._begun_with_louder_tones`).
# Seeds 2138, 1515 and 6693: four syllables whose onsets kept T4's time, but not their centres (0.26,
# 0.27 and 0.135 s apart once: syllables alternating short and long), until the centres had to.
# Seeds 11936, 17540 and 39509: a 460-465 Hz voice whose harmonics heard its syllables at T4's pace,
# joined on a low unit's timeline, until that timeline's fundamental had to be a unit's (468 Hz and up).
@pytest.mark.parametrize("seed", [488, 1386, 1460, 1591, 3360, 41, 296, 489, 632, 724, 728, 57949, 58536, 63981, 2138, 1515, 6693, 10776, 11936, 17540, 39509])
def test_tv_speech_alone_raises_no_alarm(seed):
    raised = [e.data["label"] for e in sound_starts(feed_detector(AlarmDetector(), ts.tv_speech_alone(seed))) if e.data["label"] in c.ALARM_LABELS]
    assert not raised


def _beep(on: float, off: float) -> Beep:
    """A steady 3.1 kHz piezo's beep, as a channel measures it."""
    return Beep(on, off, 3100.0, 20.0, -20.0, 1.0, freq_on=3100.0, freq_off=3100.0)


def _group(onsets: list[float], length: float) -> list[Beep]:
    return [_beep(on, on + length) for on in onsets]


def test_t3_group_spans_two_iso_periods():
    """A T3 group's intervals may each sit in 0.8-1.2 s, but three onsets span two periods of 1 s +- 10 %."""
    assert T3.timing_fits(_group([0.0, 0.9, 1.8], length=0.45))  # ISO 8201's fastest sounder
    assert T3.timing_fits(_group([0.0, 0.89, 1.78], length=0.45))  # and a frame off at each end
    assert not T3.timing_fits(_group([0.0, 0.88, 1.77], length=0.45))  # music seed 877's partial
    assert not T3.timing_fits(_group([0.0, 0.85, 1.70], length=0.45))  # 135-140 BPM, two beats apart


def test_t4_group_spans_three_iso_periods():
    """Each interval may sit anywhere in T4's window, but four onsets span three periods of 0.2 s +- 10 %."""
    assert T4.timing_fits(_group([0.0, 0.18, 0.36, 0.54], length=0.1))  # ISO 8201's fastest sounder
    assert T4.timing_fits(_group([0.0, 0.17, 0.35, 0.52], length=0.1))  # and a frame off at each end
    assert not T4.timing_fits(_group([0.0, 0.17, 0.31, 0.50], length=0.1))  # music seed 575's partial: each interval fits, not the span
    assert not T4.timing_fits(_group([0.0, 0.15, 0.29, 0.46], length=0.1))  # TV speech seed 488's scraps
    # A sounder's timeline (joined beeps) may keep time by its offsets instead, where a voice hid the
    # beeps' starts: these onsets span 0.48 s, the offsets 0.53 s.
    masked_starts = [_beep(on, off) for on, off in ((0.0, 0.1), (0.16, 0.27), (0.32, 0.44), (0.48, 0.63))]
    assert not T4.timing_fits(masked_starts)
    assert T4.timing_fits(masked_starts, joined=True)
    assert not T4.timing_fits(_group([0.0, 0.16, 0.32, 0.48], length=0.1), joined=True)  # neither spans it


def test_beeps_centres_keep_a_sounders_time():
    """A sounder's timer keys its beeps, so their centres lie ISO 8201's period apart, however masking moved an onset."""
    # The slowest and fastest T4 sounders ISO 8201 allows (0.22 and 0.18 s a period), a frame off at each end.
    assert T4.timing_fits(_group([0.0, 0.22, 0.44, 0.67], length=0.1))
    assert T4.timing_fits(_group([0.0, 0.18, 0.36, 0.53], length=0.1))
    # A 520 Hz unit at -5 dB whose first beep's start noise hid, as its channel measured it (found).
    masked = [_beep(on, off) for on, off in ((1.982, 2.152), (2.262, 2.372), (2.422, 2.552), (2.662, 2.772))]
    assert T4.timing_fits(masked, joined=True)
    # Notes at 0.235 s a beat (music seed 1793's partial): each onset interval fits T4's window, the centres span 0.705 s.
    assert not T4.timing_fits(_group([0.0, 0.235, 0.47, 0.705], length=0.15))
    # Syllables alternating short and long (espeak's "The train was late", TV speech seed 4054): onsets
    # 0.22, 0.24 and 0.22 s apart, centres 0.27, 0.19 and 0.28 s.
    syllables = [_beep(on, on + length) for on, length in ((0.0, 0.05), (0.22, 0.11), (0.46, 0.05), (0.68, 0.11))]
    assert not T4.timing_fits(syllables)
    # T3: at most two periods of 1.1 s between centres, a frame off at each end.
    assert T3.timing_fits(_group([0.0, 1.11, 2.22], length=0.45))
    assert not T3.timing_fits([_beep(0.0, 0.45), _beep(1.1, 1.55), _beep(2.2, 2.75)])  # a last note held longer: centres 2.25 s apart


def test_no_beep_of_a_fixed_tone_swells_like_a_note():
    """A sounder holds its level through each beep (a room's reverb moves it up to ~12 dB); a partial swelling 20 dB is a note's."""
    steady = _group([0.0, 1.0, 2.0], length=0.5)
    assert alarm_like(steady, T3)
    assert alarm_like([replace(steady[0], fade=12.3), *steady[1:]], T3)  # a 520 Hz unit in a room of RT60 1 s
    assert not alarm_like([replace(steady[0], fade=-22.2), *steady[1:]], T3)  # music seed 6526's 1094 Hz partial


def test_t3_beeps_leave_each_period_a_silence():
    """A T3 sounder's beep lasts at most 0.55 of a period of at least 0.9 s: held for 0.7 of its spacing, it is a legato note."""
    assert T3.timing_fits(_group([0.0, 0.96, 1.92], length=0.64))  # the longest found: a room of RT60 0.5 s
    assert not T3.timing_fits(_group([0.0, 0.97, 1.93], length=0.70))  # music seed 2309's partial


def _glide(on: float, freq_on: float, freq_off: float) -> Beep:
    """A 0.1 s beep gliding from `freq_on` to `freq_off` (its mean pitch halfway), as a channel measures it."""
    return Beep(on, on + 0.1, (freq_on + freq_off) / 2, 12.0, -27.0, 2.5, freq_on=freq_on, freq_off=freq_off)


def test_a_co_alarms_beeps_begin_and_end_near_their_pitch():
    """A sounder's 0.1 s beep moves a fifth of an octave at most; a voice's scraps glide through a piezo's pitch."""
    # TV speech seed 10776 alone: four scraps at ~2.8 kHz, joined from two channels, in T4's time
    # (on, off, pitch, first frame's pitch, last frame's pitch): two ended at 594 and 750 Hz.
    scraps = [(4.922, 5.022, 2793, 3094, 594), (5.102, 5.162, 2625, 1781, 2812),
              (5.342, 5.382, 2922, 2938, 2906), (5.562, 5.662, 2863, 3219, 750)]
    def group(edges_within: float | None = None) -> list[Beep]:
        beeps = []
        for on, off, freq, first, last in scraps:
            if edges_within is not None:  # each edge moved to within that many octaves of the pitch
                first, last = (freq * 2 ** max(-edges_within, min(edges_within, math.log2(edge / freq))) for edge in (first, last))
            beeps.append(Beep(on, off, freq, 10.8, -38.5, 2.5, freq_on=first, freq_off=last))
        return beeps
    assert not alarm_like(group(), T4, joined=True)
    # the same beeps with their edges 0.27 octave off at most (the most measured on ~720 real CO groups)
    assert alarm_like(group(edges_within=0.27), T4, joined=True)


def test_a_sweeping_sounders_beeps_share_a_pitch():
    """A sweeping sounder repeats one sweep, so its beeps' pitches overlap even where a room hid half of some."""
    onsets = [0.0, 0.2, 0.4, 0.6]
    # A CO sounder sweeping 900 -> 1034 Hz per 0.1 s beep: two heard whole, one its first half, one its last.
    sweeps = [(900, 1034), (900, 1034), (900, 967), (967, 1034)]
    assert alarm_like([_glide(on, lo, hi) for on, (lo, hi) in zip(onsets, sweeps)], T4)
    # The low-unit draw's TV speech (seed 1): four scraps of a voice's harmonics gliding down at 1.3-2.3 kHz,
    # each within 12 % of their median pitch and in T4's time, but the second lies 281 Hz below the first.
    voice = [(2062.5, 1937.5), (1656.25, 1625.0), (1906.25, 1875.0), (2281.25, 1343.75)]
    assert not alarm_like([_glide(on, a, b) for on, (a, b) in zip(onsets, voice)], T4)


def test_a_sweep_moves_bin_by_bin_and_notes_step():
    """A sweeping sounder's pitch crosses its bins about one move each; a channel stepping between notes' partials moves a few bins at a time."""
    # Music seed 29993 alone: three "beeps" at T3's time, each stepping down 1,594 -> 1,312 Hz (9 bins) in 3-4 moves.
    beeps = [(0.02, 0.64, 1392.6, 1594, 1312), (0.95, 1.52, 1546.1, 1594, 1344), (1.86, 2.48, 1396.2, 1562, 1312)]
    def group(moves: list[int]) -> list[Beep]:
        return [
            Beep(on, off, freq, 12.8, -33.5, 3.2, freq_on=first, freq_off=last, pitch_moves=n, pitch_range=first - last)
            for (on, off, freq, first, last), n in zip(beeps, moves)
        ]
    assert not alarm_like(group([3, 4, 4]), T3)
    # the same beeps had their pitch moved a bin at a time (8 or 9 moves), as a sweep's does
    assert alarm_like(group([9, 8, 8]), T3)
