"""`smoke_alarm`, `co_alarm` and `beeping`: tonal beeps, then their temporal pattern.

1. `TonalTracker` gives each frequency channel's tonal salience every 10 ms.
2. Per channel, a small state machine cuts salience into beeps (onset, offset,
   frequency). A beep ends when the tone stops standing out *or* its level
   falls well below the beep's peak, so a room's reverb tail does not glue
   two beeps together; a new beep needs a fresh rise in level. A louder
   sound rising over a beep that has lasted a while starts a new one (an
   alarm's beep over a note at its pitch).
3. Per channel, the last beeps are matched against the two standard
   patterns, with tolerances wide enough for real units, jitter and reverb:
   - temporal-three (ISO 8201, smoke): 3 beeps of ~0.5 s, one per ~1 s, then a pause;
   - temporal-four (CO): 4 beeps of ~0.1 s, one per ~0.2 s, then a pause.
   The pause is what tells an alarm from any regular beeper, so a match is
   confirmed once the time a next regular beep would have started has passed
   without one: about 3.3 s after a T3 starts, 1 s after a T4 starts.
   In a lively room a T4 beep's tail fills the 0.1 s gap after it, and beeps
   measure joined: T4 is matched on their direct sound as well (`direct_parts`).
   Under a TV or music, other sounds share the alarm's pitch: what is clearly
   weaker than the alarm's beeps (a voice's harmonic, a note) is neither
   mended into a beep, nor a beep that breaks the pause, nor the end of a group.
   Nor is a held tone's turn in a channel that another held tone shares: most of
   a fixed tone's beeps begin with their tone.
   A fixed-tone sounder is held to its own pitch (within 1.5 bins): a note a
   few percent off is another sound, and a group of fading (struck) or
   swelling notes or of notes of mixed pitch is no alarm; nor a T3 group whose pitch moved in
   some beeps only (two notes taking turns), where a sweeping sounder's beeps all sweep, bin by
   bin (a channel stepping from one note's partial to the next jumps a few bins at a time). A T4
   group with another tone bursting twice as fast over it is a phone's trill in a reverberant room.
   A low sounder (450-1000 Hz) is also heard in its harmonics. Under a voice
   each harmonic loses different beeps of a T4 group, so the sounder's
   harmonics are joined into one timeline (a beep any of them hears at one
   time is one beep) and matched as well. A higher sounder's own channels
   are joined so too (under music its beeps may fall to different channels),
   strictly. T4 only: a T3's half-second beeps outlast a syllable or a note,
   so one channel hears them whole enough; except a sweep's. Under music a
   wide channel's loudest tone flips between an octave sweep and the notes it
   crosses, so the narrow channels' rising pieces are chained into the sweep's
   beeps and matched as T3 too. They also tell that a sweeping sounder sounded
   again where a wide channel lost its next beep: a sweep that never pauses is
   no alarm.
4. Regular beeps that are not (and cannot still become) an alarm pattern are
   `beeping`: a microwave, an oven timer, a truck reversing. Never an alarm.
   The band falls quiet between a beeper's beeps; music's other notes and a
   trill's second tone fill those gaps, so they are not `beeping`.

Each lasting sound is reported once when it starts (end=None) and once when
it ends. An alarm also produces an urgent final `response`, so a home can
react with no model loaded.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import islice, takewhile
from statistics import fmean, median  # (on a group's 3-8 numbers: numpy's call costs ~20x more)

import numpy as np

from .. import events
from ..events import Event
from .tonal import BIN_HZ, FRAME_SECONDS, KEYED_BIN_HZ, TonalFrames, TonalTracker

# Beep segmentation (dB).
ON_DB = 8.0  # salience that starts a beep
STAY_DB = 4.0  # salience that keeps it going
DECAY_DB = 9.0  # a beep ends when its level falls this far below its peak (reverb tails)
RISE_DB = 6.0  # a new beep after a decayed one needs this much fresh rise
END_FRAMES = 3  # off this many frames (30 ms) ends a beep
# A beep's level that rises this far above all it had, once it has lasted this long, is a louder
# sound beginning over it: a new beep. (A piano's note at a piezo's pitch, struck just before the
# alarm's beep, carried on into it and made one long beep of both; a beep's own rise takes ~40 ms.)
SPLIT_RISE_DB, SPLIT_AFTER_S = 6.0, 0.1
# Two held tones in one channel take it from each other in turn as their levels wander (partials
# beating, a note struck beside one), and each turn cuts a "beep" out of a tone that never began
# (music seed 28557: a 2,963 Hz partial held 0.6 s, cut into four at T4's pace by a 1,975 Hz one
# beside it). A beep that took the channel from another tone while its own tone sounded already,
# and never rose more than HELD_LEVEL_DB above that, began before it (`Beep.sounded_before`); the
# partials' turns rose 0-2.6 dB. A sounder's beep begins with a rise at its pitch: under music
# at -5 dB, a unit's harmonic sharing a bin with a note's partial rose 1.4 dB in one beep of four.
# Over the 1,840 alarm groups found first in `bench lite`'s sets, its nine more reverberant seeds
# and its three-cycle draw, no fixed tone's group had more than one such beep. (Fixed tones only:
# a sweep under music passes through notes' partials.)
HELD_LEVEL_DB = 3.0
# A sweeping T3 sounder's beeps moved 0.86 times per bin they crossed or more (a group's median,
# over the 375 sweeping smoke alarms found first in `bench lite`'s sets and its nine more
# reverberant seeds and three-cycle draw), 0.68 under music at 0 dB; music's steps from one
# partial to the next 0.33-0.44 (`sweeps_bin_by_bin`).
SWEEP_MIN_BINS, SWEEP_MIN_MOVES_PER_BIN = 3, 0.55
MIN_BEEP_S = 0.04
# In a lively room (RT60 0.5-1 s) a 0.1 s beep's tail fills the next 0.1 s gap to a plateau only
# 7-9 dB under the beeps (the room's sum builds up over the group), so DECAY_DB does not end it
# and two or three of a T4 group's beeps measure as one. The direct sound still starts and stops
# sharply: cut at T4_CUT_DB under each part's peak, the beep falls into its direct-sound parts
# (`direct_parts`), which T4 is matched on as well. The levels cut are the beep's tone's, which may
# lie just beyond the channel (`AlarmDetector._tone_levels`).
T4_CUT_DB = 6.0
# All of a group's parts cut from one beep span a whole T4 group (0.7 s, -10 %): a T3 beep (0.5 s,
# +10 %) that a tune's notes chopped into pieces at T4's pace is no CO alarm.
T4_ONE_BEEP_SPAN_S = 0.6
EDGE_S = 0.05  # a frame ending this long after a beep's edge no longer hears across it (32 ms window, 30 ms smoothing)
MAX_BEEP_S = 2.0  # longer is a continuous tone, not a beep
FREQ_TOLERANCE = 0.12  # beeps of one sounder agree in frequency within 12 %
FIXED_TONE_HZ, FIXED_TONE = 50.0, 0.02  # (within 1.5 bins, or 2 %, if it is a fixed tone)
KEEP_BEEPS = 8
ECHO_DB, ECHO_S = 12.0, 1.0
# What breaks a pattern's pause is the sounder sounding again, about as loud as its last beep. In a
# lively room the last beep's own tail comes back as a "beep" 0.12-0.13 s after it, 0.07-0.09 s long
# and 9.7-12 dB weaker (a 3.1 kHz CO alarm at RT60 0.7 and 1 s over a fan and TV speech), and lost those
# alarms' first cycles when it broke their pause. (A channel still keeps such a beep: it may be the
# sounder's under a voice, and ECHO_DB drops only weaker ones.)
PAUSE_ECHO_DB = 9.0
LENGTH_RATIO = 1.4  # the longest beep of a group at most this many times the shortest
SWEEP_RATIO = 1.2  # a beep whose pitch moved this much is a sweep's
LENGTH_SLACK_S = 0.06  # (or this much longer: a T4 beep half masked measures 0.05 s, a whole one 0.1 s)
# A beep breaks a pattern's pause only if it is at least this fraction of the pattern's
# shortest beep: a 0.1 s scrap of a voice's harmonic near the alarm's tone is not the
# next beep of a T3 alarm.
PAUSE_BREAK_FRACTION = 0.5
PAUSE_BREAK_DB = 3.0  # (a shorter one breaks it too if it is as loud as the pattern: a tune's note)
LAST_TRIES = 3  # the latest fitting beeps tried as a group's last
PRE_PAUSE_DB = 6.0  # a beep before the group that leaves it no pause must be about as loud and long (a run's beeps are)
MERGE_SCRAP_S = 0.08  # another sound's scrap inside a dropout is at most this long
MERGE_FREQ = 0.06  # pieces of one beep: the second goes on at the pitch where the first stopped
MERGE_LEVEL_DB = 6.0  # and is about as loud; a weaker scrap before it is another sound's
# A beep follows one tone: a jump larger than this (per 10 ms) is another sound. Sweeps move less.
FREQ_STEP_HZ, FREQ_STEP = 70.0, 0.06
BATCH_SAMPLES = 1_600  # decisions every 0.1 s of stream time

RESPONSE_TEXT = {"smoke_alarm": "Smoke alarm sounding", "co_alarm": "Carbon monoxide alarm sounding"}


def sweeps(beep: "Beep") -> bool:
    """Whether the beep's pitch moved one way by SWEEP_RATIO or more (a notes' pitch holds)."""
    low, high = sorted((beep.freq_on, beep.freq_off))
    return high >= SWEEP_RATIO * low


def fixed_tone_tolerance(pitch: float) -> float:
    """Hz a fixed tone's measured pitch may move at `pitch`: its edges' frames, a harmonic between two bins (FIXED_TONE_HZ, FIXED_TONE)."""
    return max(FIXED_TONE_HZ, FIXED_TONE * pitch)


def sweeps_alike(group: list["Beep"]) -> bool:
    """Whether every beep's pitch moved the same way, further than a fixed tone's edges move it.

    A sweeping sounder's half-second beeps all sweep. Where a channel's loudest bin moved
    in some beeps only, notes of two pitches took turns in it (one decaying, the next struck).
    """
    fixed = fixed_tone_tolerance(median([b.freq for b in group]))
    moves = [b.freq_off - b.freq_on for b in group]
    return all(m > fixed for m in moves) or all(m < -fixed for m in moves)


def sweeps_bin_by_bin(group: list["Beep"]) -> bool:
    """Whether the beeps' pitch moved through the bins it crossed about one at a time, as a sweep's does.

    A channel's loudest bin follows a sweep bin by bin (one move per bin crossed, more where
    noise jostles it), but steps from one note's partial to the next a few bins away
    (music seeds 29993 and 30238: three "beeps" each stepping 1,594 -> 1,312 Hz in 3-4 moves
    over 9 bins). Judged on the beeps that crossed at least SWEEP_MIN_BINS bins, by their median.
    """
    rates = [b.pitch_moves / (b.pitch_range / BIN_HZ) for b in group if b.pitch_range >= SWEEP_MIN_BINS * BIN_HZ]
    return len(rates) < 2 or median(rates) >= SWEEP_MIN_MOVES_PER_BIN


def lengths_alike(beeps: list["Beep"], slack: float = 0.0) -> bool:
    lengths = [b.duration for b in beeps]
    return max(lengths) <= max(LENGTH_RATIO * min(lengths), min(lengths) + LENGTH_SLACK_S) + slack


SPAN_SLACK_S = 2 * FRAME_SECONDS  # a group's first and last beeps are each placed to a frame


@dataclass(frozen=True)
class Pattern:
    label: str
    beeps: int
    duration: tuple[float, float]  # accepted beep length (s)
    interval: tuple[float, float]  # accepted onset-to-onset time within a group (s)
    interval_spread: float  # max difference between intervals in one group (s)
    min_gap: float  # silence between beeps (s)
    min_pause: float  # silence before the group (s) when an earlier beep of the same sounder is known
    confirm_after: float  # seconds past the next regular onset before the pause counts
    hold: float  # an active alarm ends after this long without a beep of its sounder
    median_duration: float  # the group's beeps at least this long (s), the median of them
    dropout: float  # a gap this short (s) inside a beep may be a dropout (T4's gaps are 0.1 s, T3's 0.5 s)
    sweep_piece: float  # a sweeping beep's piece this long (s) counts as a beep
    # A sounder is silent about half of each period (its beeps are as long as its gaps);
    # measured, a beep grows by the analysis window and a room's reverb, but its gap keeps
    # at least a quarter of the period. Notes played legato at the pattern's rate leave less.
    max_duty: float = 0.75  # the group's median beep length at most this fraction of its median interval
    period: tuple[float, float] = (0.0, math.inf)  # ISO 8201's onset-to-onset time within a group, +-10 % (s)
    centre_slack: float = math.inf  # each interval between beeps' centres within the period widened by this (s)

    def fits_length(self, beep: "Beep") -> bool:
        """A beep of this pattern's length; or for a sweep, the part of one that music left (its other notes hide the rest)."""
        low = self.sweep_piece if sweeps(beep) else self.duration[0]
        return low <= beep.duration <= self.duration[1]

    def timing_fits(self, group: list["Beep"], joined: bool = False) -> bool:
        """Lengths and spacing of the pattern's beeps (spaced by their onsets).

        `joined`: beeps of a sounder's timeline, each joined from what its harmonics heard.
        Each harmonic places a beep's edges within a frame or two, so a joined beep may
        measure that much longer; and where a voice hid a beep's start in every harmonic,
        its end still keeps time: spacing by the offsets counts too.
        """
        if not all(self.fits_length(b) for b in group):
            return False
        if not lengths_alike(group, JOIN_SLACK_S if joined else 0.0):
            return False  # one sounder's beeps are alike; notes of a tune are not
        if median([b.duration for b in group]) < (self.sweep_piece if all(sweeps(b) for b in group) else self.median_duration):
            return False  # some beeps may be half masked, not most: scraps of a voice are that short
        if not all(b.on - a.off >= self.min_gap for a, b in zip(group, group[1:])):
            return False
        if median([b.duration for b in group]) > self.max_duty * median([b.on - a.on for a, b in zip(group, group[1:])]):
            return False
        if not self._centres_keep_time([(b.on + b.off) / 2 for b in group]):
            return False
        return self._spaced([b.on for b in group]) or (joined and self._spaced([b.off for b in group]))

    def _centres_keep_time(self, centres: list[float]) -> bool:
        """Whether the beeps' centres keep a sounder's time: its timer keys every beep, so their centres lie a period apart.

        A masked edge moves a beep's onset (what the group is spaced by) but its centre by only
        half as much, while a voice's syllables or a tune's notes that begin on a beat are as long
        as they happen to be: their onsets keep time and their centres need not. So the centres
        span at most the group's periods of ISO 8201's slowest sounder (`span`; the fastest
        bounds the times it is spaced by, `_spaced`), and each interval between them lies
        within the period but for what masking moves a centre (`centre_slack`).
        """
        if round(centres[-1] - centres[0], 6) > self.span[1]:
            return False  # slower than any sounder: a tune's beat, a voice's syllables
        low, high = round(self.period[0] - self.centre_slack, 6), round(self.period[1] + self.centre_slack, 6)
        return all(low <= round(b - a, 6) <= high for a, b in zip(centres, centres[1:]))

    @cached_property
    def span(self) -> tuple[float, float]:
        """How long a group lasts from first to last beep (s): its periods of ISO 8201's fastest and slowest sounder, a frame off at each end (SPAN_SLACK_S).

        (Rounded to the microsecond, as the times compared with it are: a centre halves a sum
        of frame times, a bound sums a few.)
        """
        periods = self.beeps - 1
        return round(periods * self.period[0] - SPAN_SLACK_S, 6), round(periods * self.period[1] + SPAN_SLACK_S, 6)

    def _spaced(self, times: list[float]) -> bool:
        intervals = [b - a for a, b in zip(times, times[1:])]
        return (
            all(self.interval[0] <= i <= self.interval[1] for i in intervals)
            and max(intervals) - min(intervals) <= self.interval_spread
            and round(times[-1] - times[0], 6) >= self.span[0]
        )


# Nominal T3: 0.5 on / 0.5 off x3, 1.5 pause. Nominal T4: 0.1 on / 0.1 off x4, 5 s pause.
# (ISO 8201 / NFPA 72 allow +-10 % on each time, so a T3 beep follows the last one after
# 0.9-1.1 s; +-0.1 s more covers how a beep's onset is placed. Music at 110-130 BPM repeats
# a note every two beats, 0.9-1.1 s apart, too; a wider window let in 85-95 BPM as well.)
# A group's first to last onset spans two of those periods: at least 1.8 s, less a frame at each
# end (`Pattern.span`: 1.78). Measured over ~1,100 alarm clips: a found smoke group spans 1.83-2.2 s,
# none lost; music seeds 877, 1299, 1987 and 2595 (a partial repeated at 130-140 BPM, spans
# 1.70-1.77 s) raised smoke alarms by themselves.
# A T3 beep lasts at most 0.55 s of a period of at least 0.9 s (ISO 8201, +-10 %): beeps held
# for more than 0.70 of their spacing are notes played legato. Measured over the 822 alarm clips
# of `bench lite`'s sets: a fixed tone's groups held at most 0.64 (a 520 Hz unit in a room of
# RT60 0.5 s), a sweep's 0.56; music seeds 2309 and 2562 (partials at 1656 and ~1500 Hz held
# 0.73 and 0.72 of their spacing) raised smoke alarms by themselves.
T3 = Pattern("smoke_alarm", 3, (0.38, 0.8), (0.8, 1.2), 0.2, 0.2, 0.9, 0.3, 3.5, 0.38, 0.08, 0.25, max_duty=0.70, period=(0.9, 1.1))
# A fixed tone's onsets are placed to a frame or two (a sweep's only once it reaches a channel),
# so its beeps follow each other within 1.1 s + 0.05 s. Measured over ~1,100 alarm clips (every
# draw, unit and room of `bench lite` and the tests): the widest a found fixed-tone group spaced
# its beeps lies between 1.10 and 1.12 s; music seed 329 (a 1312 Hz partial 1.19 s and 1.08 s apart) raised
# a smoke alarm by itself.
T3_FIXED_TONE_MAX_INTERVAL_S = 1.15
# Each T4 interval may be placed a frame or two off (0.14-0.26 s accepted), but a group's first to
# last onset spans three of ISO 8201's 0.2 s +- 10 % periods: at least 0.54 s, less a frame at each
# end (`Pattern.span`: 0.52). Measured over ~1,100 alarm clips (every set of `bench lite` and the tests):
# a found CO group spans 0.56-0.69 s, and no clip is lost at 0.52; music seed 575 (a 2344 Hz
# partial, 0.50 s) and TV speech seed 488 (a voice's scraps at 2.78 kHz, 0.46 s) raised CO alarms
# by themselves with each interval inside the window.
# A sounder's beeps' centres (`Pattern._centres_keep_time`), measured over the 822 alarm clips of
# `bench lite`'s sets (the first group found in each): a T3 group's span 1.875-2.135 s, a T4 group's
# 0.57-0.66 s, and a T4 group's centres each 0.15-0.25 s apart (the widest: a 520 Hz unit at -5 dB whose
# first beep's start noise hid, 0.25, 0.17 and 0.23 s). Generated TV speech (seeds 0-6,999) and music
# (0-4,699) raised 26 CO alarms by themselves from four syllables or notes whose onsets kept T4's time:
# most spanned 0.68-0.75 s between centres (a slower beat than any sounder's; espeak's "The train was
# late" at 0.23 s a syllable), or alternated short and long (0.05 and 0.11 s: centres 0.19 and
# 0.26-0.29 s apart). Checking both took them to 3, every alarm clip still found as before.
T4 = Pattern("co_alarm", 4, (0.04, 0.22), (0.14, 0.26), 0.08, 0.03, 1.0, 0.8, 6.5, 0.06, 0.04, 0.04, period=(0.18, 0.22), centre_slack=0.03)
PATTERNS = (T3, T4)

# An alarm is loud (85 dB SPL at 3 m) and clearly tonal: fainter things are artefacts.
ALARM_MIN_LEVEL_DB = -60.0
ALARM_MIN_SALIENCE = 9.0  # a group's beeps on average
ALARM_MIN_BEEP_SALIENCE = 7.0  # and each (a high harmonic of a 520 Hz sounder under music stands out ~8 dB)
# A sounder's beep holds its level (its beeps sag 1-5 dB below their peak on average, in
# noise, music or speech); a piano's note fades 6 dB or more over a T3 beep's length.
# (Fixed tones only: a sweep's level wanders from bin to bin.)
ALARM_MAX_SAG_DB = 5.5
# Nor does it swell or fade through a beep as music's notes can: a struck note fading fast, a
# note swelling as partials beat. Along the line fitted to the middle half of each beep (`level_fade`),
# a sounder's T3 group measured -2.7 to +1.4 dB (median of the group; +5.9 and +5.0 under music at
# 0 and -5 dB, a note under it fading; reverberant rooms up to RT60 1 s within that), the music that
# raised false smoke alarms 13-15 dB (fading) and -21 dB (swelling). Only that far off: under loud
# music an alarm's beeps take on the notes' trends. (T3 only: a 0.1 s beep has too few frames.)
ALARM_MAX_FADE_DB = 10.0
# Nor does any one beep of it swell or fade that far: a sounder reaches its level within milliseconds
# and holds it. Measured over ~1,400 alarm clips (`bench lite`'s sets and nine more seeds of its
# reverberant draw), a fixed tone's beep moved at most 12.3 dB along that line (a 520 Hz unit in a
# room of RT60 1 s, the reverberant field building through the beep); music seeds 831, 3880 and 6526
# (a pure 1094 Hz partial) raised smoke alarms by themselves with one "beep" swelling 20-23 dB.
ALARM_MAX_BEEP_FADE_DB = 16.0
# A CO alarm's beep begins and ends near its own pitch: a fixed tone's exactly, a sweeping
# sounder's a tenth of a second into its sweep (an octave per 0.5 s covers 0.2 octave in a T4
# beep). Over ~720 CO alarm groups (`bench lite`'s sets, nine more seeds of its reverberant draw)
# a beep's first or last frame lay at most 0.27 octave from the beep's pitch (a 520 Hz unit under
# TV speech, its onset masked); a voice's scrap taken for a sweeping piezo's beep (TV speech seed
# 10776) began at 3.2 kHz and ended at 750 Hz, 1.9 octaves under its 2.86 kHz pitch. (T4 only: a
# T3 beep's half second may sweep a whole octave.)
T4_MAX_GLIDE_OCTAVES = 0.5
GROUP_LEVEL_DB = 10.0  # a group's beeps within this of each other (another sound's partial moves one by <= 6 dB)
SAME_BEEP_S = 0.05  # one beep seen by two channels starts within this of itself in both
TRILL_RATE, TRILL_DB = 2, 6.0  # another tone within 6 dB beeping twice as often during the group: a trill
# A played note is heard in its partials (1, 2, 3, 4 times its pitch), all beginning together: a
# repeated melody or chord note's partial makes a neat group of beeps at a sounder's pitch, and
# another partial of the same note begins with each of its beeps. Partials j and k of one note lie
# at j/k of each other. A piezo makes no tone at those ratios in the band (its harmonics lie above
# it), and a low-frequency unit only with its own harmonics (`low_unit_harmonics`), so a group
# most of whose beeps began with such a tone is music. (Chance co-onsets at these exact ratios
# under music are rare: a group needs them on most of its beeps.)
NOTE_RATIOS = ((1, 4), (1, 2), (2, 3), (3, 4), (4, 3), (3, 2), (2, 1))  # (j, k): a tone at j/k of the beep's pitch
NOTE_MIN_FRACTION = 0.25  # the other tone lasts at least this fraction of the beep (a note, not a scrap)
# A tone below is about as loud or louder: a note's lower partials are its stronger ones. A much
# weaker tone an octave below is another sound that began with the beep by chance (music's notes
# start on its beat; one under a 3.1 kHz alarm's beeps, 1.59 kHz and 12 dB weaker, began with all three).
NOTE_BELOW_DB = 6.0
NOTE_ABOVE_DB = 8.0  # a tone above is weaker: music's false groups had their notes' next partial 3-6 dB under them
# A low-frequency unit: the standard's 520 Hz +-10 %. A real unit's square is rarely symmetric and
# its small speaker rolls off below ~700 Hz, so all its harmonics, even ones too, begin together on
# every beep (its 2nd harmonic, ~1040 Hz, can be its loudest).
LOW_SOUNDER_HZ = (468.0, 572.0)
# A unit's harmonic begins with most of its beeps, at one pitch and within this of one level; a
# note's partial at a harmonic's ratio begins with one beep of a group, or at another level with
# the next (music's 1656 Hz partial repeated at T3's pace had a 1121 Hz note begin with one beep
# and a 3312 Hz one, 9 dB apart, with two: the harmonics of a 552 Hz unit, had they been steady).
UNIT_HARMONIC_DB = 6.0
# Keyed channels find groups only where a low unit's fundamental or 2nd harmonic sounds; between, they
# hear notes (`_overtone_of_notes` needs them: a vacuum under music raised a smoke alarm on a 1,573 Hz
# partial whose note's 781 Hz one only they heard) but no unit (a beeper's sweep under music: three 0.5-0.7 s
# tones at 891 Hz in one keyed channel were a smoke alarm).
KEYED_GROUP_HZ = ((450.0, 600.0), (900.0, 1100.0))
# Keyed channels find T4 groups too: a low unit's CO beeps, 0.1 s long, under music or a voice at
# -5 dB, are often heard whole only in its own fine bin (the 32 ms spectrum shares the unit's bins
# with a note a semitone away). But one 15.6 Hz bin also hears a tone gliding through it as a beep:
# a voice's harmonic, a note's vibrato. Such "beeps" dwell there 0.04-0.09 s and rise as far as the
# glide passes the bin's centre, so four of them differ in level and are short (TV speech seeds
# 489, 632, 724 and 728: 3.9-9.4 dB apart; 57949 and 58536, and music over a kitchen, negative mix
# seed 55: within 3 dB, their median 0.06-0.07 s). A unit's tone stays in its bin: the keyed T4
# groups that raised CO alarms on `bench lite`'s sets were within 1.6 dB, their median beep
# 0.10-0.15 s (the 64 ms window lengthens a 0.1 s beep).
KEYED_T4_LEVEL_DB = 3.0
KEYED_T4_MIN_BEEP_S = 0.09
# And a voice's harmonic begins with its syllable's other harmonics, a note's partial with its chord's
# other notes, louder ones among them in other keyed bins, where a unit's tone begins alone but for its
# own octave. TV speech seed 63981: a 1,094 Hz harmonic keyed four times within 1.9 dB, 0.08-0.11 s
# each, every time begun with harmonics 5-8 dB louder at 450-1,000 Hz (a CO alarm). Music seeds 41472
# and 43617: a 969 Hz partial held 0.5-0.7 s three times at T3's pace, each time (or two of three) begun
# with chord notes 6-13 dB louder at 500-800 Hz (smoke alarms). For T3 and T4 groups alike: a note's or
# a syllable's onset under a unit's beep is chance, not the rule for most of its beeps.
KEYED_SIBLING_S = 0.03  # begun together: onsets this close
KEYED_SIBLING_DB = 3.0  # louder: by more than this

# A low-frequency sounder (~450-1000 Hz: the standard's 520 Hz square-ish wave) is heard in
# its harmonics too. Under a voice each harmonic loses different beeps (the voice's own
# harmonics cover them in turn), so no one channel may hear a whole T4 group, yet each beep
# is heard in some harmonic. The sounder's timeline joins its harmonics k * f0 (k <= HARMONICS,
# each measured within a bin of k * f0: a fixed tone's harmonics are exact, a voice's pitch
# wanders): what any of them hears at one time is one beep. Levels are compared within a
# harmonic (a sounder's harmonics differ by 5-20 dB; each is as steady as the tone).
# No unit sounds below the standard's 468 Hz, but a voice often does: TV speech seeds 35672,
# 38420 and 39509 (as 11936 and 17540, seen in earlier sessions) raised CO alarms from a
# 460-465 Hz voice's harmonics, its syllables keyed at T4's pace.
HARMONIC_F0 = (LOW_SOUNDER_HZ[0], 1000.0)
HARMONICS = 7
HARMONIC_HZ = BIN_HZ  # a harmonic's measured pitch lies within a bin (the spectrum's resolution) of k * f0
HARMONIC_F0_STEP_HZ, HARMONIC_F0_STEPS = 5.0, 4  # f0 tried this finely, this many steps either side of a fundamental's measured pitch (a bin: 31 Hz)
T4_SPAN_S = (T4.beeps - 1) * T4.interval[1] + T4.duration[1]  # the longest a T4 group lasts
HARMONIC_WINDOW_S = T4_SPAN_S + T4.min_pause  # the beeps this recent: a T4 group and the pause before it
HARMONIC_JOIN_S = 0.02  # pieces heard in two harmonics this close in time are one beep
JOIN_SLACK_S = 2 * FRAME_SECONDS  # a joined beep's length: each edge placed by another harmonic, within a frame
# A higher sounder (a piezo, 1-3.7 kHz) has one harmonic in the band, but under music its beeps
# may fall to different channels (a note holds one channel's attention through one beep, a
# neighbouring channel's through the next), so its own channels' beeps are joined the same way.
# Joined from one harmonic they earn no leeway: each beep heard whole in some channel, spaced by
# its onsets, and as loud as each other (a note's pieces alternate 5-8 dB; a sounder's do not).
SINGLE_HARMONIC_LEVEL_DB = 4.0
# A sweeping sounder (an octave per T3 beep) under music: a wide channel's most salient bin
# flips between the sweep and the notes it crosses, so no channel hears its beeps whole. Each
# narrow channel still hears the part of the sweep that crosses it, rising. Those pieces chain
# into the sweep: each next one starts (in time and pitch) inside the last one and goes on
# further the same way, about as loud. A note holds its pitch; a chain of a few rising pieces
# is a glide. T3 only: a T4 beep's short sweep stays within one narrow channel.
# An octave per 0.5 s crosses a quarter-octave channel in 0.125 s; measured with the analysis
# window's smear, a piece lasts up to ~0.23 s. A longer rising piece is a slower glide, or a
# note that the channel's argmax left for the sweep (or the other way round).
SWEEP_PIECE_MAX_S = 0.25
SWEEP_CHAIN_PIECES = 3  # a chain this many pieces long is a sweep
SWEEP_CHAIN_DB = 6.0  # its pieces within this of each other
SWEEP_CHAIN_STEP = 2**0.25  # after a dropout (T3.dropout) a piece starts at most a narrow channel's width above where the last one ended
SWEEP_WINDOW_S = (T3.beeps - 1) * T3.interval[1] + T3.duration[1] + T3.min_pause + T3.interval[1]  # a group, the pause before it and a next beep
# A sounder's pause is judged on narrow channels' rising pieces only if each of its beeps crosses
# more than a narrow channel (a quarter octave): within one, a voice's harmonic rising a bin or
# two looks the same as a slow sweep's piece (a piezo's 2.9-3.4 kHz sweep is a quarter octave).
SWEEP_MIN_OCTAVES = 0.25
# A rising piece tells the sweep sounded again if it is about as loud as the group's beeps: a
# combination alarm's spoken "Fire!" in its pause glides up at a sweep's rate, 11 dB weaker.
SWEEP_AGAIN_DB = 8.0

# Beeping: regular tonal beeps of one sounder.
BEEPING_MIN_BEEPS = 3
BEEPING_DURATION = (0.07, 1.5)
BEEPING_INTERVAL = (0.12, 3.0)
BEEPING_REGULARITY = 0.15  # each interval within 15 % of the next
BEEPING_FREQ = 0.04  # one sounder: frequency within 4 %
BEEPING_LEVEL_DB = 6.0  # and loudness within 6 dB
BEEPING_LENGTH_RATIO = 1.5  # and beep lengths within 1.5x
BEEPING_MIN_SALIENCE = 12.0  # clearly tonal
BEEPING_MAX_SAG_DB = 3.0  # and steady: an electronic beep, not a piano note or a bark
BEEPING_HOLD_MIN_S = 3.0
# And the beep is what the band is hearing: a beeper stands within a few dB of all the
# band's sound (-2 to -6 dB on the test set), while the "beeps" of music are mostly a
# note's harmonics repeating on the beat, 8-27 dB under the rest of the music.
BEEPING_MIN_DOMINANCE_DB = -10.0
# And the band falls quiet between the beeps: in a phone's trill another tone fills each
# gap, in music other notes do; between a beeper's beeps only the room's sound remains.
BEEPING_GAP_DROP_DB = 6.0
BEEPING_GAPS = 3  # judged over the run's latest gaps
BAND_HISTORY_BATCHES = 80  # 8 s of the band's level: the longest run's latest gaps


@dataclass(frozen=True)
class Beep:
    on: float
    off: float
    freq: float
    salience: float
    peak: float  # dB
    sag: float  # dB the mean level lies below the peak: ~1 for a steady beep, more for a struck or sung note
    dominance: float = 0.0  # dB its level stood above or below all the band's sound at once (at best)
    freq_on: float = 0.0  # Hz where it began and where it ended (a sweep moves; a fixed tone does not)
    freq_off: float = 0.0
    harmonics: tuple = ()  # on a sounder's timeline: what each harmonic heard of it, (k of k * f0, Hz, dB) per piece
    fade: float = 0.0  # dB its level fell from start to end (`level_fade`; negative: rose): a sounder's holds
    parts: tuple = ()  # (on, off, peak, sag) of its direct-sound parts where they differ from the beep (`direct_parts`)
    part_of: float | None = None  # a direct-sound part: the onset of the beep it was cut from
    pitch_moves: int = 0  # how many times its pitch moved from frame to frame
    pitch_range: float = 0.0  # Hz between its lowest and highest frame's pitch
    sounded_before: bool = False  # its tone sounded as loud before it began: it only took the channel from another tone (`HELD_LEVEL_DB`)

    @property
    def duration(self) -> float:
        return self.off - self.on


def is_echo(beep: Beep, before: Beep) -> bool:
    """A much weaker beep soon after a strong one: its reverb or a flutter of noise, not a beep."""
    return beep.peak < before.peak - ECHO_DB and beep.on - before.off < ECHO_S


def breaks_pause(beep: Beep, last: Beep, pattern: Pattern, pitch: float, tolerance: float) -> bool:
    """Whether `beep` (after the group's `last` beep) means the pattern's pause did not come.

    `pitch` and `tolerance`: the group's sounder (`sounder_pitch`). At the sounder's pitch,
    what is as loud as the group breaks the pause, and a weaker sound too if it could be
    a next beep (long enough, after the pattern's gap). Near the pitch but not at it (a
    note, a voice's harmonic a few percent off) only a sound as loud and as long as a beep
    of the pattern does: a tune's notes are.
    """
    if beep.peak < last.peak - PAUSE_ECHO_DB:
        return False  # the room's echo of the last beep, or another sound
    if tolerance >= FREQ_TOLERANCE * pitch and sweeps(last):
        # A sweeping sounder's next beep sweeps too (a held note is another sound), from where
        # its beeps began: one still sounding has not reached their middle pitch yet.
        if not (sweeps(beep) and (same_sounder(beep.freq, pitch) or same_sounder(beep.freq_on, last.freq_on))):
            return False
    elif not same_sounder(beep.freq, pitch):
        return False
    loud = beep.peak >= last.peak - PAUSE_BREAK_DB
    long_enough = beep.duration >= PAUSE_BREAK_FRACTION * pattern.duration[0]
    if abs(beep.freq - pitch) > tolerance:
        return loud and long_enough
    return loud or (beep.on >= last.off + pattern.min_gap and long_enough)


def same_sounder(a: float, b: float) -> bool:
    return abs(a - b) <= FREQ_TOLERANCE * min(a, b)


def repeat_one_sweep(group: list[Beep], pitch: float) -> bool:
    """Whether a sweeping group's beeps share a pitch, as the beeps of one sweeping sounder do.

    Such a sounder sweeps the same range in every beep, so whatever part of a beep the
    room let through lies inside that range: the pitches each beep covered (its first,
    mean and last) overlap those of every other beep, but for a masked edge measured a
    bin or two off (twice a fixed tone's tolerance, as in `off_pitch`). A voice's
    harmonics glide through different pitches syllable by syllable. Measured over the 822
    alarm clips of `bench lite`'s sets (11,000 sweeping groups): no group's beeps lay more
    than 66 Hz apart (1.3x that tolerance at 950 Hz), and every first group's overlapped;
    TV speech raised CO alarms from four "beeps" gliding at pitches 94-281 Hz apart (the
    low-unit draw's seed 1 under every smoke alarm, TV seeds 1386, 1460, 1591 and 3360).
    """
    top = min(max(b.freq, b.freq_on, b.freq_off) for b in group)
    bottom = max(min(b.freq, b.freq_on, b.freq_off) for b in group)
    return bottom - top <= 2 * fixed_tone_tolerance(pitch)


def sweeping(group: list[Beep]) -> bool:
    """Whether the group's sounder sweeps (`sounder_pitch` allows it FREQ_TOLERANCE)."""
    pitch, tolerance = sounder_pitch(group)
    return tolerance >= FREQ_TOLERANCE * pitch


def sounder_pitch(group: list[Beep]) -> tuple[float, float]:
    """The group's pitch and how far another beep of its sounder may lie from it (Hz).

    A fixed-tone sounder repeats its pitch to within a bin or two, so only a beep that
    close can be its next one; a voice's harmonic or a note a few percent off is
    another sound. A sweeping sounder's beeps measure less alike: FREQ_TOLERANCE.
    """
    pitch = median([b.freq for b in group])
    # (Signed: another sound at a beep's edge moves its first or last frame either way; a sweep always moves one way.)
    sweep = abs(median([b.freq_off - b.freq_on for b in group]))
    if sweep <= fixed_tone_tolerance(pitch):
        return pitch, fixed_tone_tolerance(pitch)
    return pitch, FREQ_TOLERANCE * pitch


def alarm_like(group: list[Beep], pattern: Pattern, joined: bool = False) -> bool:
    """Whether a group of beeps is one sounder's, in the pattern's timing (its pause is judged apart)."""
    if not pattern.timing_fits(group, joined):
        return False
    if fmean([b.salience for b in group]) < ALARM_MIN_SALIENCE:
        return False
    if max(b.peak for b in group) - min(b.peak for b in group) > GROUP_LEVEL_DB:
        return False  # one sounder's beeps are about as loud as each other; a tune's notes need not be
    pitch, tolerance = sounder_pitch(group)
    if any(abs(b.freq - pitch) > tolerance for b in group):
        return False  # a fixed tone repeats its pitch: these are notes or harmonics of different pitches
    if pattern is T4 and any(glide_octaves(b) > T4_MAX_GLIDE_OCTAVES for b in group):
        return False  # a scrap gliding through a sounder's pitch, not a beep of it
    sweeping_sounder = tolerance >= FREQ_TOLERANCE * pitch
    if sweeping_sounder:
        if pattern is T3 and not sweeps_alike(group):
            return False  # (T3 only: a 0.1 s beep's sweep moves its pitch a bin or three, not clearly)
        if pattern is T3 and not sweeps_bin_by_bin(group):
            return False  # a staircase: notes' partials taking a channel in turn
        if not repeat_one_sweep(group, pitch):
            return False  # glides through different pitches: a voice's harmonics, not one sounder's sweep
    else:  # a fixed tone holds its level through each beep
        if 2 * sum(b.sounded_before for b in group) > len(group):
            return False  # pieces of a held tone that other tones took the channel from in turn
        if median([b.sag for b in group]) > ALARM_MAX_SAG_DB:
            return False  # a struck note repeated, not a sounder
        if pattern is T3:  # (half-second beeps: enough frames to judge their trend, spacing and edges)
            if abs(median([b.fade for b in group])) > ALARM_MAX_FADE_DB:
                return False  # notes swelling or fading through each beep
            if any(abs(b.fade) > ALARM_MAX_BEEP_FADE_DB for b in group):
                return False  # a note swelling through one of them
            if max(b.on - a.on for a, b in zip(group, group[1:])) > T3_FIXED_TONE_MAX_INTERVAL_S:
                return False  # slower than any sounder keeping ISO 8201's time
            if any(off_pitch(b.freq_on, pitch, tolerance) and off_pitch(b.freq_off, pitch, tolerance) for b in group):
                return False  # a beep that begins and ends at another pitch is another sound's (a note over it)
    return True


def keyed_unit_beeps(group: list[Beep]) -> bool:
    """Whether a keyed channel's T4 group is a unit's tone keyed in its bin, not a tone gliding through it (KEYED_T4_LEVEL_DB)."""
    peaks = [b.peak for b in group]
    return max(peaks) - min(peaks) <= KEYED_T4_LEVEL_DB and median([b.duration for b in group]) >= KEYED_T4_MIN_BEEP_S


def glide_octaves(beep: Beep) -> float:
    """How far (octaves) the beep's first or last frame lay from its pitch, whichever is further (0: edges unknown)."""
    return max((abs(math.log2(edge / beep.freq)) for edge in (beep.freq_on, beep.freq_off) if edge > 0), default=0.0)


def off_pitch(freq: float, pitch: float, tolerance: float) -> bool:
    """Whether a beep's first or last frame is at another pitch than its fixed-tone sounder's.

    A masked edge may measure a bin or two off, or another sound's frame: twice the
    fixed tone's tolerance. A sounder's beep has at least one of its two edges at its pitch
    (measured over ~1,100 alarm clips, none lost); music seed 179's third "beep" began and
    ended at 1188 Hz, a note over a 1 kHz partial (3.8x the tolerance).
    """
    return abs(freq - pitch) > 2 * tolerance


def low_unit_harmonics(a: float, b: float) -> bool:
    """Whether tones at `a` and `b` Hz may both be harmonics of one low-frequency unit (its fundamental in LOW_SOUNDER_HZ, each within a bin)."""
    for n in range(1, HARMONICS + 1):
        f0 = a / n
        if LOW_SOUNDER_HZ[0] <= f0 <= LOW_SOUNDER_HZ[1] and abs(b - round(b / f0) * f0) <= BIN_HZ:
            return True
    return False


def no_pause_before(before: list[Beep], group: list[Beep], pattern: Pattern) -> bool:
    """Whether a beep of the sounder `before` the group (by onset) leaves it no pause: part of a longer run (a beeper, music), not this alarm.

    Any one within the pattern's pause, not only the latest: a note held with vibrato in a
    lively room swells at T4's pace, and a weaker, shorter swell just before the four that
    formed a group left the one before it, as loud and as long as theirs, unheard (negative
    mixes: a whistled tune's note at 2,093 Hz in a room of RT60 0.5 s).
    """
    for b in reversed(before):
        if b.on + MAX_BEEP_S <= group[0].on - pattern.min_pause:
            break  # (by onset: none earlier ends within the pause)
        if group[0].on - b.off < pattern.min_pause and b.peak >= group[-1].peak - PRE_PAUSE_DB and lengths_alike([b, *group]):
            return True
    return False


def previous_slot_filled(beeps: deque, group: list[Beep], pattern: Pattern, pitch: float, tolerance: float) -> bool:
    """Whether the group's sounder sounded where a run's beep before the group would have: one interval before its first.

    A truck's reversing beeper never pauses; where music hides one of its beeps, the three
    after it look like a T3 group after its pause. The beep before that is still heard, often
    joined to a note at its pitch (too long to count as a beep of the pattern). An alarm's
    pause is silent there: what sounds at the group's pitch, as loud, over that whole slot
    is the run going on.
    """
    interval = fmean([b.on - a.on for a, b in zip(group, group[1:])])
    start = group[0].on - interval
    end = start + min(b.duration for b in group)
    loud = group[-1].peak - PRE_PAUSE_DB
    return any(
        b.on <= start + pattern.interval_spread and end - pattern.interval_spread <= b.off <= group[0].on
        and abs(b.freq - pitch) <= tolerance and b.peak >= loud
        for b in beeps
    )


def sounder_timeline(pool: list[Beep], f0: float) -> list[Beep]:
    """One low sounder's beeps as all its harmonics heard them.

    `pool`: beeps of the narrow channels, by onset. A beep at k * f0 (within HARMONIC_HZ)
    is the sounder's k-th harmonic. Pieces that overlap in time (or nearly) are one beep,
    from the first onset to the last offset, keeping what each harmonic heard (k, Hz, dB).
    Its level is put on one scale: how far below its own harmonic's loudest beep it lies.
    """
    heard: list[tuple[Beep, int]] = []
    levels: dict[int, float] = {}
    for b in pool:
        k = round(b.freq / f0)
        if 1 <= k <= sounder_harmonics(f0) and abs(b.freq - k * f0) <= HARMONIC_HZ:
            heard.append((b, k))
            levels[k] = max(levels.get(k, -np.inf), b.peak)
    top = max(levels.values(), default=0.0)
    timeline: list[Beep] = []
    for b, k in heard:
        level, part = b.peak - levels[k] + top, ((k, b.freq, b.peak),)
        if timeline and b.on <= timeline[-1].off + HARMONIC_JOIN_S:
            m = timeline[-1]
            timeline[-1] = Beep(
                m.on, max(m.off, b.off), f0, max(m.salience, b.salience), max(m.peak, level), min(m.sag, b.sag),
                max(m.dominance, b.dominance), f0, f0, m.harmonics + part,
            )
        else:
            timeline.append(Beep(b.on, b.off, f0, b.salience, level, b.sag, b.dominance, f0, f0, part))
    return timeline


def sounder_harmonics(f0: float) -> int:
    """How many of a sounder's harmonics k * f0 its timeline joins: a higher sounder's fundamental only."""
    return HARMONICS if f0 <= HARMONIC_F0[1] else 1


def harmonics_heard(group: list[Beep]) -> dict[int, tuple[float, float, float]]:
    """Per harmonic that heard a group on a sounder's timeline: its pitch (Hz, median), and its loudest and weakest beep (dB)."""
    pitches: dict[int, list[float]] = {}
    levels: dict[int, list[float]] = {}
    for b in group:
        loudest: dict[int, float] = {}  # (a beep's pieces at one harmonic: its level there is the loudest's)
        for k, hz, db in b.harmonics:
            pitches.setdefault(k, []).append(hz)
            loudest[k] = max(loudest.get(k, -np.inf), db)
        for k, db in loudest.items():
            levels.setdefault(k, []).append(db)
    return {k: (median(pitches[k]), max(levels[k]), min(levels[k])) for k in pitches}


def rising_piece(beep: Beep) -> bool:
    """A narrow channel's piece of a sweep: its pitch rose by a bin or more (a note's holds), and it crossed the channel quickly."""
    return beep.freq_off - beep.freq_on >= BIN_HZ and beep.duration <= SWEEP_PIECE_MAX_S


def sweep_chains(pieces: Iterable[Beep]) -> list[Beep]:
    """A sweeping sounder's beeps, chained from the rising pieces narrow channels heard.

    A piece goes on a chain whose latest piece it starts inside (its onset before that one's
    end, its first pitch within the pitches that one covered; or just after, past a dropout)
    and rises beyond, about as loud.
    A chain of SWEEP_CHAIN_PIECES or more is one beep, from its first onset to its last offset.
    """
    chains: list[list[Beep]] = []
    for b in sorted(pieces, key=lambda p: (p.on, p.freq_on)):
        for chain in reversed(chains):
            a = chain[-1]
            if (
                a.on <= b.on <= a.off + T3.dropout
                and a.freq_on - BIN_HZ <= b.freq_on <= a.freq_off * SWEEP_CHAIN_STEP + BIN_HZ
                and b.freq_off > a.freq_off
                and abs(b.peak - a.peak) <= SWEEP_CHAIN_DB
            ):
                chain.append(b)
                break
        else:
            chains.append([b])
    out = []
    for chain in chains:
        if len(chain) >= SWEEP_CHAIN_PIECES:
            out.append(Beep(
                chain[0].on, max(b.off for b in chain), fmean([b.freq for b in chain]), fmean([b.salience for b in chain]),
                max(b.peak for b in chain), median([b.sag for b in chain]), max(b.dominance for b in chain),
                chain[0].freq_on, chain[-1].freq_off,
            ))
    return sorted(out, key=lambda b: b.on)


def direct_sound(beeps: Iterable[Beep]) -> list[Beep]:
    """The beeps, each cut into its direct-sound parts (`Beep.parts`) where it has them."""
    out = []
    for b in beeps:
        if not b.parts:
            out.append(b)
            continue
        for on, off, peak, sag in b.parts:
            out.append(Beep(on, off, b.freq, b.salience, peak, sag, b.dominance, b.freq_on, b.freq_off, part_of=b.on))
    return out


def level_fade(levels: list[tuple[float, float]], start: float, end: float) -> float:
    """dB a beep's level fell from `start` to `end`, along the least-squares line through its middle half's frames (time, dB).

    Not its first or last quarter (nor frames whose window reached across its edges): in a room,
    a tone's level moves from its direct sound to the room's steady sum over the first tenths of a
    second, and its reverberant tail, falling, is part of the beep as measured; a sounder's beep is
    flat between, where a struck note goes on fading.
    """
    edge = max(EDGE_S, (end - start) / 4)
    inner = [(t, lev) for t, lev in levels if start + edge <= t <= end - edge]
    if len(inner) < 3:
        return 0.0
    t_mean = fmean([t for t, _ in inner])
    lev_mean = fmean([lev for _, lev in inner])
    spread = sum((t - t_mean) ** 2 for t, _ in inner)
    slope = sum((t - t_mean) * (lev - lev_mean) for t, lev in inner) / spread  # dB/s
    return -slope * (end - start)


def direct_parts(levels: list[tuple[float, float]], start: float) -> list[tuple[float, float, float, float]]:
    """A beep's direct-sound parts, (on, off, peak, sag): cut from its frames' levels (time, dB) as beeps are, at T4_CUT_DB.

    A part ends where the level stays T4_CUT_DB under its peak for END_FRAMES frames (a room's
    tail plateau), and the next begins where it rises RISE_DB from there (the next beep's direct sound).
    """
    parts: list[tuple[float, float, float, float]] = []
    part: list[float] | None = []  # the levels of the part being cut (None: between parts)
    on, peak, off_since, low, trough = start, -np.inf, 0.0, 0, np.inf
    for t, lev in levels:
        if t - FRAME_SECONDS < start:
            continue  # (a weak lead-in: not the beep's)
        if part is None:
            if lev < trough:
                trough = lev
            if lev >= trough + RISE_DB:
                on, peak, part, low = t - FRAME_SECONDS, lev, [lev], 0
            continue
        if lev < peak - T4_CUT_DB:
            if low == 0:
                off_since = t - FRAME_SECONDS
            low += 1
            if low >= END_FRAMES:
                parts.append((on, off_since, peak, peak - sum(part) / len(part)))
                part, trough = None, lev
        else:
            low = 0
            if lev > peak:  # (not max(): this loop runs per frame of every closed beep)
                peak = lev
            part.append(lev)
    if part:
        parts.append((on, off_since if low else levels[-1][0], peak, peak - sum(part) / len(part)))
    return [p for p in parts if p[1] - p[0] >= MIN_BEEP_S]


@dataclass
class _ChannelState:
    active: bool = False
    start: float = 0.0
    peak: float = -200.0
    trough: float = -np.inf  # -inf: ready for a beep; else a new beep must rise RISE_DB above it
    off_frames: int = 0
    off_since: float = 0.0
    freq_sum: float = 0.0
    sal_sum: float = 0.0
    lev_sum: float = 0.0
    n: int = 0
    last_freq: float = 0.0
    first_freq: float = 0.0
    dominance: float = -200.0
    pitch_moves: int = 0
    low_freq: float = 0.0
    high_freq: float = 0.0
    level_before: float = -np.inf  # dB its tone sounded at before the beep took the channel from another tone (-inf: it did not)
    levels: list = field(default_factory=list)  # (time, level) of the on-frames: to place the onset, and the fade
    beyond_levels: list = field(default_factory=list)  # (time, `TonalFrames.beyond_level`) of the same frames
    beeps: deque = field(default_factory=lambda: deque(maxlen=KEEP_BEEPS))


@dataclass
class _Lasting:
    """A sound that is on: reported at start, and again at its end."""

    label: str
    start: float
    last: float  # end of its latest beep
    freq: float
    hold: float
    score: float


class AlarmDetector:
    def __init__(self) -> None:
        self._tracker = TonalTracker()
        self._channels = [_ChannelState() for _ in self._tracker.channels]
        self._alarms: dict[str, _Lasting] = {}
        self._beeping: _Lasting | None = None
        self._now = 0.0
        self._fed = 0
        # Per (channel, pattern): a group of beeps that fits the pattern and waits for its
        # pause to be judged, and when. Beeps only change when a channel closes one, so the
        # group is found then, not again every batch.
        self._candidates: dict[tuple[int, int], tuple[list[Beep], float, float]] = {}
        # Groups found on a low sounder's timeline (its harmonics joined), by (f0, first onset):
        # group, when its pause is judged, until when, and each harmonic's pitch and level (`harmonics_heard`).
        self._harmonic_candidates: dict[tuple[int, float], tuple[list[Beep], float, float, dict[int, tuple[float, float, float]]]] = {}
        self._narrow = [c for c, ch in enumerate(self._tracker.channels) if ch.narrow]
        self._keyed = [ch.keyed for ch in self._tracker.channels]
        self._keyed_hz = {c: ch.lo_bin * KEYED_BIN_HZ for c, ch in enumerate(self._tracker.channels) if ch.keyed}  # each keyed channel's bin
        self._finds_groups = [
            c not in self._keyed_hz or any(low <= self._keyed_hz[c] <= high for low, high in KEYED_GROUP_HZ) for c in range(len(self._channels))
        ]
        self._harmonic_beeps: deque[Beep] = deque()  # the narrow channels' beeps a harmonic may have heard, the last seconds'
        self._sweep_pieces: deque[Beep] = deque()  # the narrow channels' rising pieces, the last seconds' (`sweep_chains`)
        self._sweep_candidates: dict[float, tuple[list[Beep], float, float]] = {}  # T3 groups of sweep chains, by first onset
        # The band's level per frame over the last seconds (per batch: times, dB), for
        # telling a beeper's silent gaps from a trill's or a tune's filled ones.
        self._band_history: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=BAND_HISTORY_BATCHES)
        # Every bin's salience and level in the last frame processed (`_level_before`)
        self._last_bins = (np.full(self._tracker.n_bins, -99.0), np.full(self._tracker.n_bins, -120.0))

    # --- streaming -------------------------------------------------------------

    def process(self, audio: np.ndarray) -> list[Event]:
        # Work in batches that end on the same stream positions whatever the piece
        # sizes, so a file fed whole and a live stream fed in 10 ms pieces agree.
        out: list[Event] = []
        audio = np.asarray(audio, dtype=np.float32)
        while len(audio):
            take = min(len(audio), BATCH_SAMPLES - self._fed % BATCH_SAMPLES)
            self._fed += take
            out += self._process_batch(audio[:take])
            audio = audio[take:]
        return out

    def _process_batch(self, audio: np.ndarray) -> list[Event]:
        frames = self._tracker.process(audio)
        if frames is None:
            return []
        out: list[Event] = []
        self._band_history.append((frames.times, frames.band_level))
        new_beeps = self._segment(frames)
        self._now = float(frames.times[-1])
        for channel in sorted({channel for channel, _ in new_beeps}):
            if self._finds_groups[channel]:
                self._find_candidates(channel)
        narrow = [b for c, b in new_beeps if self._tracker.channels[c].narrow]
        harmonic = [b for b in narrow if self._may_be_harmonic(b)]
        if harmonic:
            self._remember(self._harmonic_beeps, harmonic, HARMONIC_WINDOW_S)
            self._find_harmonic_candidates(harmonic)
        rising = [b for b in narrow if rising_piece(b) and self._may_be_alarm_beep(b)]
        if rising:
            self._remember(self._sweep_pieces, rising, SWEEP_WINDOW_S)
            self._find_sweep_candidates()
        for channel, beep in new_beeps:
            out += self._on_beep(channel, beep)
        out += self._confirm_alarms()
        out += self._expire()
        return out

    @staticmethod
    def _remember(kept: deque[Beep], new: list[Beep], window_s: float) -> None:
        """Keep the narrow channels' `new` beeps (once: two overlapping channels hear the same piece) and forget those older than `window_s`."""
        for b in new:
            if not any(b.on == k.on and b.off == k.off and abs(b.freq - k.freq) < BIN_HZ for k in islice(reversed(kept), 4)):
                kept.append(b)
        while kept[0].off < new[-1].off - window_s:
            kept.popleft()

    def finish(self) -> list[Event]:
        out = []
        for label in list(self._alarms):
            out.append(self._end(self._alarms.pop(label)))
        if self._beeping is not None:
            out.append(self._end(self._beeping))
            self._beeping = None
        return out

    # --- beeps -----------------------------------------------------------------

    def _segment(self, frames: TonalFrames) -> list[tuple[int, Beep]]:
        """Cut each channel's salience into beeps; return the beeps that ended, in time order."""
        found: list[tuple[int, Beep]] = []
        loud = np.max(frames.salience, axis=0) >= ON_DB
        times = frames.times.tolist()
        band = frames.band_level.tolist()
        for c, st in enumerate(self._channels):
            sal, lev = frames.salience[:, c], frames.level[:, c]
            if not (st.active or loud[c]):
                # No beep can start in this batch: only keep the rise requirement up to date.
                if st.trough > -np.inf:
                    st.trough = -np.inf if np.any(sal < STAY_DB) else min(st.trough, float(np.min(lev)))
                continue
            # Python floats: this loop runs per frame, where numpy scalars cost several times more.
            sal, lev, freq, beyond = sal.tolist(), lev.tolist(), frames.freq[:, c].tolist(), frames.beyond_level[:, c].tolist()
            for i, t in enumerate(times):
                if st.active and sal[i] >= ON_DB and abs(freq[i] - st.last_freq) > max(FREQ_STEP_HZ, FREQ_STEP * st.last_freq):
                    # Another tone took over the channel (a note, a second sounder): they are different beeps.
                    st.off_since = t - FRAME_SECONDS
                    beep = self._close(st, lev[i])
                    if beep is not None:
                        found.append((c, beep))
                    st.trough = -np.inf
                    level_before = self._level_before(frames, i, freq[i])  # (the tone taking over may have sounded already)
                else:
                    level_before = -np.inf
                if st.active and lev[i] >= st.peak + SPLIT_RISE_DB and t - st.start >= SPLIT_AFTER_S and sal[i] >= ON_DB:
                    # A louder sound began over the one the channel was hearing (a sounder's beep over a note at its pitch).
                    st.off_since = t - FRAME_SECONDS
                    beep = self._close(st, lev[i])
                    if beep is not None:
                        found.append((c, beep))
                    self._open(st, t, freq[i], sal[i], lev[i], band[i])
                    continue
                if st.active:
                    if lev[i] > st.peak:  # (comparisons, not max(): this loop runs per frame and channel)
                        st.peak = lev[i]
                    if sal[i] < STAY_DB or lev[i] < st.peak - DECAY_DB:
                        if st.off_frames == 0:
                            st.off_since = t - FRAME_SECONDS
                        st.off_frames += 1
                        if st.off_frames >= END_FRAMES:
                            beep = self._close(st, lev[i])
                            if beep is not None:
                                found.append((c, beep))
                    else:
                        st.off_frames = 0
                        st.n += 1
                        st.freq_sum += freq[i]
                        st.sal_sum += sal[i]
                        st.lev_sum += lev[i]
                        if freq[i] != st.last_freq:
                            st.pitch_moves += 1
                            st.low_freq, st.high_freq = min(st.low_freq, freq[i]), max(st.high_freq, freq[i])
                        st.last_freq = freq[i]
                        if lev[i] - band[i] > st.dominance:
                            st.dominance = lev[i] - band[i]
                        if t - st.start <= MAX_BEEP_S:  # (a longer one is no beep: a tone held for hours keeps no list)
                            st.levels.append((t, lev[i]))
                            st.beyond_levels.append((t, beyond[i]))
                elif sal[i] < STAY_DB:
                    st.trough = -np.inf  # the tone is gone: the next one is a fresh beep
                else:
                    if lev[i] < st.trough:
                        st.trough = lev[i]
                    if sal[i] >= ON_DB and lev[i] >= st.trough + RISE_DB:
                        self._open(st, t, freq[i], sal[i], lev[i], band[i])
                        st.level_before = level_before
        found.sort(key=lambda cb: cb[1].off)
        self._last_bins = (frames.bin_salience[-1], frames.bin_level[-1])
        return found

    def _level_before(self, frames: TonalFrames, i: int, hz: float) -> float:
        """The level (dB) of a tone clearly sounding at `hz` in the frame before frame `i`; -inf if none did."""
        salience, level = (frames.bin_salience[i - 1], frames.bin_level[i - 1]) if i else self._last_bins
        col = frames.column(hz)
        return float(level[col]) if salience[col] >= ON_DB else -np.inf

    @staticmethod
    def _open(st: _ChannelState, t: float, freq: float, sal: float, lev: float, band: float) -> None:
        """A beep starts in the frame ending at `t`."""
        st.active, st.start, st.peak = True, t - FRAME_SECONDS, lev
        st.off_frames, st.n, st.freq_sum, st.sal_sum, st.lev_sum = 0, 1, freq, sal, lev
        st.levels = [(t, lev)]
        st.beyond_levels = [(t, -np.inf)]
        st.first_freq = freq
        st.last_freq = freq
        st.pitch_moves, st.low_freq, st.high_freq = 0, freq, freq
        st.dominance = lev - band
        st.level_before = -np.inf

    @staticmethod
    def _tone_levels(st: _ChannelState) -> list[tuple[float, float]]:
        """The levels of the beep's tone: its bin's, or the bin's beyond the channel's edge where that was the louder at the beep's peak.

        A narrow channel's edge bin hears the skirt of a tone just beyond it, and a whistled note's
        vibrato (~5.5 Hz) swings that skirt 6-7 dB at T4's pace while the note holds its level within
        1 dB: its one beep fell into four direct-sound parts even in a dry room (negative mixes,
        seeds 30-41: a note at 2,093 Hz over a fan, a kitchen, music and TV speech). Per beep, not per
        frame: a unit sounding at an edge bin itself keeps that bin's dips between its beeps, which
        the bin beyond, louder in a lively room's gaps, would fill.
        """
        peak = max(range(len(st.levels)), key=lambda k: st.levels[k][1])
        return st.beyond_levels if st.beyond_levels[peak][1] > st.levels[peak][1] else st.levels

    @staticmethod
    def _close(st: _ChannelState, level: float) -> Beep | None:
        st.active = False
        st.trough = level  # if the tone lingers (reverb), a new beep must rise again from here
        # The beep starts where its level comes within DECAY_DB of its peak: a weak
        # lead-in (the last beep's reverb, noise) does not move its onset.
        start = next((t - FRAME_SECONDS for t, lev in st.levels if lev >= st.peak - DECAY_DB), st.start)
        if not MIN_BEEP_S <= st.off_since - start <= MAX_BEEP_S:
            return None
        beep = Beep(
            start, st.off_since, st.freq_sum / st.n, st.sal_sum / st.n, st.peak, st.peak - st.lev_sum / st.n, st.dominance,
            st.first_freq, st.last_freq, fade=level_fade(st.levels, start, st.off_since),
            pitch_moves=st.pitch_moves, pitch_range=st.high_freq - st.low_freq, sounded_before=st.peak <= st.level_before + HELD_LEVEL_DB,
        )
        if st.beeps and is_echo(beep, st.beeps[-1]):
            return None
        if beep.duration <= T4_SPAN_S and AlarmDetector._may_be_alarm_beep(beep):
            cut = direct_parts(AlarmDetector._tone_levels(st), start)
            if len(cut) > 1 or (cut and cut[0][1] < beep.off - END_FRAMES * FRAME_SECONDS):
                beep = replace(beep, parts=tuple(cut))
        st.beeps.append(beep)
        return beep

    # --- patterns --------------------------------------------------------------

    def _on_beep(self, channel: int, beep: Beep) -> list[Event]:
        for alarm in self._alarms.values():
            if same_sounder(alarm.freq, beep.freq):
                alarm.last = max(alarm.last, beep.off)
        if self._alarms:
            return []  # while an alarm sounds, its beeps (in any channel) are never `beeping`
        return self._check_beeping(self._channels[channel].beeps)

    def _confirm_alarms(self) -> list[Event]:
        """A pattern counts once its pause has begun: the next regular beep did not come."""
        out: list[Event] = []
        for key in sorted(self._candidates):
            group, opens, closes = self._candidates[key]
            if self._now > closes:
                del self._candidates[key]  # decided long ago
                continue
            if self._now < opens:
                continue  # too early to know the pause has begun
            pattern = PATTERNS[key[1]]
            if self._heard_again(group, pattern, key[0]) or self._overtone_of_notes(group):
                continue  # no pause; or a played note's overtone
            if pattern is T3 and sweeping(group) and self._sweep_heard_again(group):
                continue  # a sweep sounded again where the group's did (a wide channel may have lost it to other sounds)
            out += self._sound_alarm(pattern, group)
        for key in sorted(self._sweep_candidates):
            group, opens, closes = self._sweep_candidates[key]
            if self._now > closes:
                del self._sweep_candidates[key]
            elif self._now >= opens and not self._sweep_heard_again(group):
                del self._sweep_candidates[key]
                out += self._sound_alarm(T3, group)
        for key in sorted(self._harmonic_candidates):
            group, opens, closes, heard = self._harmonic_candidates[key]
            if self._now > closes:
                del self._harmonic_candidates[key]
            elif self._now >= opens and not self._harmonic_heard_again(group, T4, heard):
                del self._harmonic_candidates[key]
                out += self._sound_alarm(T4, group)
        return out

    def _sound_alarm(self, pattern: Pattern, group: list[Beep]) -> list[Event]:
        """The group's pause has come: its alarm sounds (or, sounding already, goes on)."""
        last = group[-1]
        alarm = self._alarms.get(pattern.label)
        if alarm is not None:
            alarm.last = max(alarm.last, last.off)
            return []
        score = float(np.clip(np.mean([b.salience for b in group]) / 20.0, 0.5, 1.0))
        alarm = _Lasting(pattern.label, group[0].on, last.off, float(np.mean([b.freq for b in group])), pattern.hold, score)
        self._alarms[pattern.label] = alarm
        out = [
            events.sound(self._now, alarm.label, score, alarm.start, None, freq_hz=round(alarm.freq)),
            events.response(self._now, RESPONSE_TEXT[alarm.label], final=True, emotion="urgent", urgent=True),
        ]
        if self._beeping is not None and same_sounder(self._beeping.freq, alarm.freq):
            out.append(self._end(self._beeping))  # it was the alarm all along
            self._beeping = None
        return out

    # --- a sweeping sounder's pieces chained ---------------------------------------

    @staticmethod
    def _may_be_alarm_beep(beep: Beep) -> bool:
        """Clearly tonal and loud enough to be a sounder's (each beep of a group is)."""
        return beep.salience >= ALARM_MIN_BEEP_SALIENCE and beep.peak >= ALARM_MIN_LEVEL_DB

    def _find_sweep_candidates(self) -> None:
        """The latest T3 group of sweep chains (`sweep_chains`), with no pause broken yet, waits for its pause."""
        if T3.label in self._alarms:
            return
        fitting = [b for b in sweep_chains(self._sweep_pieces) if sweeps(b) and T3.fits_length(b)]
        for end in range(len(fitting), max(T3.beeps - 1, len(fitting) - LAST_TRIES), -1):
            sounder = fitting[:end]
            if not alarm_like(sounder[-T3.beeps :], T3):
                # A voice's glide may chain between the sounder's beeps: the ones at the last one's pitch, then.
                # (Not always: a chain that music cut short measures another mean pitch than a whole one.)
                last = sounder[-1]
                sounder = [b for b in sounder if same_sounder(b.freq, last.freq) and b.peak >= last.peak - ECHO_DB]
            group = sounder[-T3.beeps :]
            if len(group) < T3.beeps or not alarm_like(group, T3):
                continue
            if no_pause_before(sounder[: -T3.beeps], group, T3):
                continue
            if self._sweep_heard_again(group):
                continue
            key = round(group[0].on, 2)
            if key not in self._sweep_candidates:
                opens = group[-1].on + fmean([b.on - a.on for a, b in zip(group, group[1:])]) + T3.confirm_after
                self._sweep_candidates[key] = (group, opens, opens + 1.0)
            return

    def _sweep_heard_again(self, group: list[Beep]) -> bool:
        """Whether the sweep sounded again since the group's last beep: a rising piece on the course of a beep begun after the pattern's gap.

        The group's beeps rise from their first pitch at their rate (octaves per second), so a
        piece at a pitch tells when its beep began: a voice's syllable gliding up over the
        last beep's top began too early to be the sounder's next beep.
        """
        last = group[-1]
        low, high = median([b.freq_on for b in group]), max(b.freq_off for b in group)
        octaves = [float(np.log2(b.freq_off / b.freq_on)) for b in group]
        if median(octaves) < SWEEP_MIN_OCTAVES:
            return False  # (a slower sweep, or a falling one: no narrow channel's rising piece tells its beeps)
        rate = median([o / b.duration for o, b in zip(octaves, group)])
        return any(
            low - BIN_HZ <= p.freq_on <= high + BIN_HZ
            and p.peak >= last.peak - SWEEP_AGAIN_DB
            and p.on - max(0.0, float(np.log2(p.freq_on / low))) / rate >= last.off + T3.min_gap - 2 * FRAME_SECONDS
            for p in self._sweep_pieces
        )

    # --- a low sounder's harmonics joined ------------------------------------------

    @staticmethod
    def _may_be_harmonic(beep: Beep) -> bool:
        """A T4 beep's length, clearly tonal: what a sounder's harmonic hears of a beep (its pitch is judged on the timeline)."""
        return T4.duration[0] <= beep.duration <= T4.duration[1] and AlarmDetector._may_be_alarm_beep(beep)

    def _find_harmonic_candidates(self, new: list[Beep]) -> None:
        """T4 groups that the `new` beeps may end, on the timelines of the sounders they may be heard from (`sounder_harmonics`)."""
        if T4.label in self._alarms:
            return
        pool = sorted(self._harmonic_beeps, key=lambda b: b.on)
        since = new[-1].off - T4_SPAN_S  # (a group with a new beep in it began at most this long before)
        fundamentals = [b.freq for b in pool if HARMONIC_F0[0] <= b.freq and b.on >= since]
        if len(fundamentals) <= T4.beeps // 2:
            return  # more than half a group's beeps are heard at its fundamental
        # Each fundamental measures within half a bin or so of its sounder's pitch: try f0 in
        # fine steps around it (the harmonics pin it down). Only f0 whose harmonics heard a new
        # beep, and a group's pieces since, most at the fundamental, can give a new group; f0
        # that hear the same beeps are one.
        # (Python sets and lists: on these few numbers numpy's calls cost more than the work.)
        steps = range(-HARMONIC_F0_STEPS, HARMONIC_F0_STEPS + 1)
        f0s = np.array(sorted({HARMONIC_F0_STEP_HZ * (round(f / HARMONIC_F0_STEP_HZ) + step) for f in fundamentals for step in steps}))
        f0s = f0s[f0s >= HARMONIC_F0[0]]
        freqs = np.array([b.freq for b in pool])
        k = np.rint(freqs[:, None] / f0s)
        harmonics = np.array([sounder_harmonics(f0) for f0 in f0s.tolist()])
        member = (k >= 1) & (k <= harmonics) & (np.abs(freqs[:, None] - k * f0s) <= HARMONIC_HZ)
        new_ids = {id(b) for b in new}
        is_new = np.array([id(b) in new_ids for b in pool])
        recent = member & (np.array([b.on for b in pool]) >= since)[:, None]
        worth = member[is_new].any(axis=0) & ((recent & (k == 1)).sum(axis=0) > T4.beeps // 2) & (recent.sum(axis=0) >= T4.beeps)
        seen: set[bytes] = set()
        for j, w in enumerate(worth.tolist()):
            if not w:
                continue
            heard_by = member[:, j]
            if heard_by.tobytes() in seen:
                continue
            seen.add(heard_by.tobytes())
            f0 = float(f0s[j])
            found = self._harmonic_group(sounder_timeline([b for b, h in zip(pool, heard_by.tolist()) if h], f0))
            if found is None:
                continue
            group, heard = found
            if sounder_harmonics(f0) == 1 and self._ran_into(group, pool):
                continue
            key = (int(f0), round(group[0].on, 2))
            if key not in self._harmonic_candidates:
                intervals = [b.on - a.on for a, b in zip(group, group[1:])]
                opens = group[-1].on + float(np.mean(intervals)) + T4.confirm_after
                self._harmonic_candidates[key] = (group, opens, opens + 1.0, heard)

    @staticmethod
    def _ran_into(group: list[Beep], pool: list[Beep]) -> bool:
        """Whether a beep just before a one-harmonic timeline's group, at its pitch as a fixed tone's but a bin off its f0, left it no pause.

        A timeline hears only what lies within a bin of its f0, and f0 is tried in 5 Hz steps:
        one a bin off a wavering tone's last few beeps leaves out the beep before them. A note
        whistled with vibrato in a lively room swells and fades at T4's pace, its pitch moving
        between two bins: the f0 that left out the beep before (3527 Hz, against 3490) made a
        CO alarm of the last four of a run (negative mix whistle_tune-kitchen-0.5-11).
        """
        first, tolerance = group[0], fixed_tone_tolerance(group[0].freq)
        before = max(
            (b for b in pool if b.off <= first.on and abs(b.freq - first.freq) <= tolerance and T4.fits_length(b)),
            key=lambda b: b.off, default=None,
        )
        return before is not None and no_pause_before([before], group, T4)

    def _harmonic_group(self, timeline: list[Beep]) -> tuple[list[Beep], dict[int, tuple[float, float, float]]] | None:
        """The timeline's latest T4 group that the sounder's harmonics heard together, with its pause so far.

        More than half its beeps are heard in two harmonics or more at once (what tells one
        sounder's pieces from scraps at a few pitches), and more than half at the fundamental
        itself (its strongest part: a note's or a voice's partials that happen to fit lack it).
        A higher sounder's timeline (one harmonic) gets no leeway instead (SINGLE_HARMONIC_LEVEL_DB).
        """
        pattern = T4
        fitting = [b for b in timeline if pattern.fits_length(b)]
        several = bool(timeline) and sounder_harmonics(timeline[0].freq) > 1  # (a timeline's beeps are at its f0)
        for end in range(len(fitting), max(pattern.beeps - 1, len(fitting) - LAST_TRIES), -1):
            group = fitting[end - pattern.beeps : end]
            ks = [{k for k, _, _ in b.harmonics} for b in group]
            if several and 2 * sum(len(k) >= 2 for k in ks) <= len(group) or 2 * sum(1 in k for k in ks) <= len(group):
                continue
            if not alarm_like(group, pattern, joined=several):
                continue
            if no_pause_before(fitting[: end - pattern.beeps], group, pattern):
                continue
            heard = harmonics_heard(group)
            if any(loudest - weakest > (GROUP_LEVEL_DB if several else SINGLE_HARMONIC_LEVEL_DB) for _, loudest, weakest in heard.values()):
                continue  # a harmonic of one sounder hears its beeps about as loud as each other
            if self._harmonic_heard_again(group, pattern, heard):
                continue
            return group, heard
        return None

    def _sounding_now(self, st: _ChannelState) -> Beep:
        """The beep a channel is hearing now (not ended yet), as far as it goes (its pitch: the mean so far, as a whole beep's)."""
        return Beep(st.start, self._now, st.freq_sum / st.n, 0.0, st.peak, 0.0, 0.0, st.first_freq, st.last_freq)

    def _harmonic_heard_again(self, group: list[Beep], pattern: Pattern, heard: dict[int, tuple[float, float, float]]) -> bool:
        """Whether a harmonic that heard the group heard the sounder again since: at its pitch, as loud, a beep's length (or sounding now)."""
        last = group[-1]
        for c in self._narrow:
            st = self._channels[c]
            beeps = [b for b in st.beeps if b.on > last.off and pattern.duration[0] <= b.duration <= pattern.duration[1]]
            if st.active and st.start > last.off:
                beeps.append(self._sounding_now(st))
            for b in beeps:
                if any(abs(b.freq - hz) <= FIXED_TONE_HZ and b.peak >= db - PAUSE_BREAK_DB for hz, db, _ in heard.values()):
                    return True
        return False

    def _heard_again(self, group: list[Beep], pattern: Pattern, channel: int) -> bool:
        """Whether the group's sounder beeped again since its last beep (or sounds now), in any channel that heard that beep.

        The group's own channel may not hear it: a wide channel that a louder tune took over
        loses a beeper that goes on beeping in its narrow channel. Other channels count a beep
        like the group's: at a fixed tone's own pitch, as loud and as long (what else they hear
        is other sounds'); one still sounding, once it has lasted half the pattern's shortest beep.
        """
        last = group[-1]
        pitch, tolerance = sounder_pitch(group)
        own = self._channels[channel]
        for c, st in enumerate(self._channels):
            if st is not own and self._keyed[c]:
                continue  # it hears a voice's harmonic at the sounder's pitch, in its pause, as loud as a beep
            if st is not own and (tolerance >= FREQ_TOLERANCE * pitch or not any(abs(b.on - last.on) <= SAME_BEEP_S and abs(b.freq - pitch) <= tolerance for b in st.beeps)):
                continue  # a sweep's, or a channel that did not hear the group's last beep
            heard = list(st.beeps)
            now = self._sounding_now(st) if st.active else None
            if now is not None:
                heard.append(now)  # sounding now
            for b in heard:
                if b.on <= last.off:
                    continue
                if st is own and breaks_pause(b, last, pattern, pitch, tolerance):
                    return True
                if (
                    st is not own
                    and abs(b.freq - pitch) <= tolerance
                    and b.peak >= last.peak - PAUSE_BREAK_DB
                    and (
                        b.duration >= PAUSE_BREAK_FRACTION * pattern.duration[0]
                        if b is now
                        else pattern.duration[0] <= b.duration <= pattern.duration[1] and lengths_alike([b, last])
                    )
                ):
                    return True
        return False

    def _overtone_of_notes(self, group: list[Beep]) -> bool:
        """Whether most of the group's beeps began with another partial of a note (NOTE_RATIOS): they are a note's partial.

        A low-frequency unit's own harmonics begin with its beeps too, but with most of them, each
        at one pitch and a steady level (UNIT_HARMONIC_DB): a tone at a harmonic's ratio that does
        not is a note's. A keyed channel's tone is placed to its own bin (KEYED_BIN_HZ), half a
        searched channel's: a voice's scrap at 500 Hz, a bin of the 32 ms spectrum off half a 1,047 Hz
        unit harmonic's pitch, was a note's partial, and the level of that unit's fundamental.
        """
        placed = [(b, KEYED_BIN_HZ if keyed else BIN_HZ) for st, keyed in zip(self._channels, self._keyed) for b in st.beeps]
        placed += [(self._sounding_now(st), KEYED_BIN_HZ if keyed else BIN_HZ) for st, keyed in zip(self._channels, self._keyed) if st.active]

        def began_with(o: Beep, beep: Beep) -> bool:
            """A tone (not a scrap) that began with the beep."""
            return abs(o.on - beep.on) <= SAME_BEEP_S and o.duration >= NOTE_MIN_FRACTION * beep.duration

        def partials(beep: Beep) -> list[Beep]:
            low, high = sorted((beep.freq_on, beep.freq_off))
            return [
                o for o, bin_hz in placed
                if began_with(o, beep)
                and o.peak >= beep.peak - (NOTE_BELOW_DB if o.freq < beep.freq else NOTE_ABOVE_DB)
                and not low - BIN_HZ <= o.freq <= high + BIN_HZ  # (a sweep's own pieces begin with it)
                and any(abs(o.freq - j / k * beep.freq) <= bin_hz * max(1.0, j / k) for j, k in NOTE_RATIOS)
            ]

        def level_begun_with(beep: Beep, hz: float) -> float | None:
            """The level of a tone at `hz` that began with `beep`, if one did.

            As a fixed tone's pitch (within 1.5 bins of the channel that heard it: a harmonic between
            two bins measures at either), and the loudest channel's (one whose edge cuts it hears less of it).
            """
            near_bins = fixed_tone_tolerance(hz) / BIN_HZ
            return max((o.peak for o, bin_hz in placed if abs(o.freq - hz) <= near_bins * bin_hz and began_with(o, beep)), default=None)

        def unit_harmonic(beep: Beep, tone: Beep) -> bool:
            """Whether `tone` (begun with `beep`) may be a low unit's own harmonic: one that begins with most of the group's beeps, as loud."""
            if not low_unit_harmonics(beep.freq, tone.freq):
                return False
            level = level_begun_with(beep, tone.freq)
            levels = [level_begun_with(b, tone.freq) for b in group]
            return 2 * sum(x is not None and abs(x - level) <= UNIT_HARMONIC_DB for x in levels) > len(group)

        return 2 * sum(any(not unit_harmonic(b, o) for o in partials(b)) for b in group) > len(group)

    def _run_before(self, group: list[Beep], pattern: Pattern, channel: int) -> bool:
        """Whether a channel that heard the group's first beep heard its sounder in the slot a run's beep before it would fill (`previous_slot_filled`).

        (The group's own channel may have lost that beep to another sound taking it over.)
        """
        first = group[0]
        pitch, tolerance = sounder_pitch(group)
        for c, st in enumerate(self._channels):
            if c != channel and self._keyed[c]:
                continue  # (its one fine bin hears a note just off the pitch, played in the slot, as a beep of its own)
            if c != channel and not any(abs(b.on - first.on) <= SAME_BEEP_S and abs(b.freq - pitch) <= tolerance for b in st.beeps):
                continue
            if previous_slot_filled(st.beeps, group, pattern, pitch, tolerance):
                return True
        return False

    def _trill_within(self, group: list[Beep]) -> bool:
        """Whether another tone, as loud, beeps about twice as often as the group while it sounds.

        A phone's trill alternates two tones ~16 times a second; in a reverberant room one
        tone's bursts smear into beeps of T4's length and rate, but the other tone keeps its
        fast bursts between and over them. An alarm's beeps are one tone.
        """
        pitch, _ = sounder_pitch(group)
        start, end, loud = group[0].on, group[-1].off, min(b.peak for b in group) - TRILL_DB
        for st in self._channels:
            other = [b.freq for b in st.beeps if start <= b.on <= end and b.peak >= loud and not same_sounder(b.freq, pitch)]
            if len(other) >= TRILL_RATE * len(group) - 1:
                mid = median(other)
                if sum(abs(f - mid) <= BEEPING_FREQ * mid for f in other) >= TRILL_RATE * len(group) - 1:
                    return True
        return False

    def _begun_with_louder_tones(self, group: list[Beep], channel: int) -> bool:
        """Whether most of a keyed channel's beeps began with a louder tone in another keyed bin, not their own octave (KEYED_SIBLING_S)."""
        pitch, since = group[0].freq, group[0].on - KEYED_SIBLING_S
        others = [
            list(takewhile(lambda other: other.on >= since, reversed(self._channels[c].beeps)))
            for c, hz in self._keyed_hz.items()
            # not the beep's own skirt, nor the unit's fundamental or 2nd harmonic
            if c != channel and abs(hz - pitch) > 2 * KEYED_BIN_HZ and min(abs(hz - pitch / 2), abs(hz - 2 * pitch)) > KEYED_BIN_HZ
        ]
        begun_with = sum(
            any(abs(other.on - beep.on) <= KEYED_SIBLING_S and other.peak > beep.peak + KEYED_SIBLING_DB for beeps in others for other in beeps)
            for beep in group
        )
        return 2 * begun_with > len(group)

    def _find_candidates(self, channel: int) -> None:
        st = self._channels[channel]
        for k, pattern in enumerate(PATTERNS):
            group = self._pattern_group(st, pattern)
            if group is not None and self._keyed[channel]:
                if self._begun_with_louder_tones(group, channel):
                    group = None  # a chord's note or a syllable's harmonic
                elif pattern is T4 and not keyed_unit_beeps(group):
                    group = None  # a tone gliding through the keyed bin (a voice's harmonic)
            if group is not None and pattern is T3 and self._run_before(group, pattern, channel):
                group = None  # (T3: a truck's reversing beeper beeps at its rate; no T4-rate run has fooled it so far)
            if group is None:
                self._candidates.pop((channel, k), None)
                continue
            previous = self._candidates.get((channel, k))
            if previous is not None and previous[0] == group:
                continue  # judged already (judged again later, a trill's first bursts may be forgotten)
            if pattern is T4 and self._trill_within(group):
                # (a trill's bursts are T4's size; T3's half-second beeps are not)
                self._candidates[(channel, k)] = (group, np.inf, np.inf)  # never an alarm
                continue
            intervals = [b.on - a.on for a, b in zip(group, group[1:])]
            next_onset = group[-1].on + float(np.mean(intervals))
            opens = next_onset + pattern.confirm_after
            self._candidates[(channel, k)] = (group, opens, opens + 1.0)

    @staticmethod
    def _pattern_group(st: _ChannelState, pattern: Pattern) -> list[Beep] | None:
        """The channel's latest beeps of one sounder, if they form `pattern` followed by no beep of it (yet)."""
        group = None
        if len(st.beeps) >= pattern.beeps:
            group = AlarmDetector._latest_group(pattern, AlarmDetector._mend(st.beeps, pattern), st.beeps)
        if group is None and pattern is T4 and any(b.parts for b in islice(reversed(st.beeps), LAST_TRIES)):
            # A lively room's tails may have joined the beeps: their direct-sound parts, then.
            # (Its pause is judged on the parts too: a part of the same beep after the group's
            # last is the tone going on. A note held with vibrato in a lively room swells and
            # fades at T4's pace, ~5.5 times a second, and its parts keep T4's time: whistled
            # tunes raised CO alarms in 6 of 1,728 fresh negative mixes.)
            parts = direct_sound(st.beeps)
            group = AlarmDetector._latest_group(pattern, parts, parts)
            if group is not None and group[0].part_of is not None:
                if group[0].on - group[0].part_of > MIN_BEEP_S:
                    group = None  # the tone sounded on into the group's first beep: no pause before it
                elif len({b.part_of for b in group}) == 1 and group[-1].off - group[0].on < T4_ONE_BEEP_SPAN_S:
                    group = None  # one beep that a tune's notes chopped into pieces (a smoke alarm's, say)
        return group

    @staticmethod
    def _latest_group(pattern: Pattern, beeps: list[Beep], heard: Iterable[Beep]) -> list[Beep] | None:
        """The latest of `beeps` (the channel's, mended or cut into their direct-sound parts) that form `pattern`, with no pause broken yet."""
        # Only beeps as long as the pattern's count; shorter or longer ones (a click,
        # a note, a sweep's split-off tail) are other sounds sharing the channel.
        fitting = [b for b in beeps if pattern.fits_length(b) and AlarmDetector._may_be_alarm_beep(b)]
        # The group usually ends with the latest fitting beep; but a weaker sound of about
        # the beep's length may follow it in the channel (a note under the alarm's tone),
        # so the one or two before are tried as the group's end too.
        for end in range(len(fitting), max(pattern.beeps - 1, len(fitting) - LAST_TRIES), -1):
            group = AlarmDetector._group_ending(pattern, fitting[:end], heard)
            if group is not None:
                return group
        return None

    @staticmethod
    def _group_ending(pattern: Pattern, fitting: list[Beep], heard: Iterable[Beep]) -> list[Beep] | None:
        """The group of `fitting`'s last beeps that forms `pattern`, if nothing in `heard` (the channel's beeps, or their parts) broke its pause yet."""
        last = fitting[-1]
        sounder = [b for b in fitting if same_sounder(b.freq, last.freq) and b.peak >= last.peak - ECHO_DB]
        if sweeps(last) and len(sounder) >= pattern.beeps and not alarm_like(sounder[-pattern.beeps :], pattern):
            # A sweeping sounder's beeps all sweep: a note held at its pitch between them is another sound.
            sounder = [b for b in sounder if sweeps(b)]
        if len(sounder) < pattern.beeps:
            return None
        group = sounder[-pattern.beeps :]
        if not alarm_like(group, pattern):
            return None
        pitch, tolerance = sounder_pitch(group)
        # The pause: nothing of this sounder, as loud, since the group's last beep. What is
        # weaker than the group (by PAUSE_BREAK_DB) counts only if it could be a next beep:
        # not a scrap of the last beep's tail that a voice or a note split off (it starts
        # sooner than the pattern's gap) nor a short bit of a harmonic near the tone.
        for b in heard:
            if b.on > last.off and breaks_pause(b, last, pattern, pitch, tolerance):
                return None
        if no_pause_before(sounder[: -pattern.beeps], group, pattern):
            return None
        return group

    @staticmethod
    def _mend(beeps: deque, pattern: Pattern) -> list[Beep]:
        """Join pieces of one beep that a dropout (noise, a voice, a reverb null, a codec) split, if the whole still fits the pattern.

        The later piece goes on where the earlier one was heading: at its pitch, or for a
        sweep further along the sweep. A short scrap of another sound in the dropout is dropped.
        """
        out: list[Beep] = []
        for b in beeps:
            for back in (1, 2):
                prev = out[-back] if len(out) >= back else None
                if prev is None or not AlarmDetector._continues(prev, b, pattern):
                    continue
                if back == 2 and out[-1].duration > MERGE_SCRAP_S:
                    break  # not a scrap in the dropout: a beep of its own
                del out[len(out) - back :]
                out.append(Beep(
                    prev.on, b.off, (prev.freq + b.freq) / 2, max(prev.salience, b.salience), max(prev.peak, b.peak),
                    max(prev.sag, b.sag), max(prev.dominance, b.dominance), prev.freq_on, b.freq_off,
                    fade=fmean([prev.fade, b.fade]),  # (each piece's own: the dropout between is not the beep's level)
                    pitch_moves=prev.pitch_moves + b.pitch_moves, pitch_range=max(prev.pitch_range, b.pitch_range, abs(b.freq_off - prev.freq_on)),
                    sounded_before=prev.sounded_before,
                ))
                break
            else:
                out.append(b)
        return out

    @staticmethod
    def _continues(prev: Beep, b: Beep, pattern: Pattern) -> bool:
        gap = b.on - prev.off
        if not 0.0 <= gap <= pattern.dropout:
            return False  # (most pairs: checked first, it is cheap)
        slope = (prev.freq_off - prev.freq_on) / max(prev.off - prev.on, FRAME_SECONDS)  # Hz/s: 0 for a fixed tone
        heading = prev.freq_off + slope * gap
        return (
            abs(b.peak - prev.peak) <= MERGE_LEVEL_DB
            # (each piece's edge frame is placed within a frame or two: along a sweep, that many Hz)
            and abs(b.freq_on - heading) <= MERGE_FREQ * heading + abs(slope) * 2 * FRAME_SECONDS
            and b.off - prev.on <= pattern.duration[1]
            and not AlarmDetector._two_held_pitches(prev, b)
        )

    @staticmethod
    def _two_held_pitches(prev: Beep, b: Beep) -> bool:
        """Whether each piece holds its own pitch, and the two lie further apart than one fixed
        tone's pieces can (twice a fixed tone's tolerance, as in `repeat_one_sweep`).

        A dropout splits a fixed tone into pieces at its one pitch; MERGE_FREQ's wider margin is
        for where a sweep was heading. In a tiled kitchen (the reverberant draw's seed 5) a
        glass's clink, 0.09 s at 3,250 Hz and as loud as the alarm, came 0.06 s before a 3.1 kHz
        unit's first beep: joined, the beep's pitch became their mean, 3,172 Hz, off the unit's,
        and its smoke alarm was missed. A piece of a sweep moves further than a fixed tone's
        tolerance even in 0.1 s, so sweeps are still joined.
        """
        def holds(beep: Beep) -> bool:
            return abs(beep.freq_off - beep.freq_on) <= fixed_tone_tolerance(beep.freq)

        return holds(prev) and holds(b) and abs(b.freq - prev.freq) > 2 * fixed_tone_tolerance(min(prev.freq, b.freq))

    def _check_beeping(self, beeps: deque) -> list[Event]:
        run = self._regular_run(list(beeps))
        if len(run) < BEEPING_MIN_BEEPS:
            return []
        # A run that may still turn out to be an alarm waits until it has more beeps than the alarm has.
        # (Judged by spacing alone: part of a sweeping alarm's beep may be all a channel hears.)
        intervals = [b.on - a.on for a, b in zip(run, run[1:])]
        for pattern in PATTERNS:
            if len(run) <= pattern.beeps and all(pattern.interval[0] <= i <= pattern.interval[1] for i in intervals):
                return []
        drop = self._gap_drop(run[-BEEPING_GAPS - 1 :])
        if drop < BEEPING_GAP_DROP_DB:
            return []
        period = float(np.median([b.on - a.on for a, b in zip(run, run[1:])]))
        hold = max(BEEPING_HOLD_MIN_S, 2.5 * period)
        last = run[-1]
        if self._beeping is not None:
            self._beeping.last = max(self._beeping.last, last.off)
            self._beeping.hold = max(self._beeping.hold, hold)
            return []
        self._beeping = _Lasting("beeping", run[0].on, last.off, last.freq, hold, 0.8)
        return [events.sound(self._now, "beeping", 0.8, run[0].on, None, freq_hz=round(last.freq), period_s=round(period, 2))]

    def _gap_drop(self, run: list[Beep]) -> float:
        """dB the band's level falls from the run's beeps to the gaps between them (medians)."""
        times = np.concatenate([t for t, _ in self._band_history])
        band = np.concatenate([level for _, level in self._band_history])
        drops = []
        for a, b in zip(run, run[1:]):
            # A frame ending at t heard the 50 ms before it (32 ms window, 30 ms smoothing).
            beep = band[(times >= a.on + EDGE_S) & (times <= a.off)]
            gap = band[(times >= a.off + EDGE_S) & (times <= b.on)]
            if len(beep) and len(gap):
                drops.append(float(np.median(beep) - np.median(gap)))
        return float(np.median(drops)) if drops else 0.0

    @staticmethod
    def _regular_run(beeps: list[Beep]) -> list[Beep]:
        """The longest run of alike, evenly spaced beeps of one sounder ending with the latest beep.

        Alike: same frequency (within BEEPING_FREQ), similar length and loudness,
        clearly tonal. Speech and music make tonal bits too, but not a run of these.
        """
        last = beeps[-1] if beeps else None
        if last is None or not (
            BEEPING_DURATION[0] <= last.duration <= BEEPING_DURATION[1]
            and last.salience >= BEEPING_MIN_SALIENCE
            and last.sag <= BEEPING_MAX_SAG_DB
            and last.dominance >= BEEPING_MIN_DOMINANCE_DB
        ):
            return []
        run = [last]
        for b in reversed(beeps[:-1]):
            if not (
                abs(b.freq - last.freq) <= BEEPING_FREQ * last.freq
                and b.salience >= BEEPING_MIN_SALIENCE
                and b.sag <= BEEPING_MAX_SAG_DB
                and b.dominance >= BEEPING_MIN_DOMINANCE_DB
                and abs(b.peak - last.peak) <= BEEPING_LEVEL_DB
                and max(b.duration, last.duration) <= BEEPING_LENGTH_RATIO * min(b.duration, last.duration)
            ):
                if abs(b.freq - last.freq) <= BEEPING_FREQ * last.freq and abs(b.peak - last.peak) <= BEEPING_LEVEL_DB:
                    break  # the same note, as loud, held longer or shorter: a tune, not a beeper
                continue  # another sound in the channel between two beeps
            interval = run[0].on - b.on
            if not BEEPING_INTERVAL[0] <= interval <= BEEPING_INTERVAL[1]:
                break
            if len(run) >= 2:
                ref = run[1].on - run[0].on
                if abs(interval - ref) > BEEPING_REGULARITY * ref:
                    break
            run.insert(0, b)
        return run

    # --- lasting sounds --------------------------------------------------------

    def _expire(self) -> list[Event]:
        out = []
        for label, alarm in list(self._alarms.items()):
            if self._now - alarm.last > alarm.hold:
                out.append(self._end(self._alarms.pop(label)))
        if self._beeping is not None and self._now - self._beeping.last > self._beeping.hold:
            out.append(self._end(self._beeping))
            self._beeping = None
        return out

    def _end(self, sound: _Lasting) -> Event:
        return events.sound(self._now, sound.label, sound.score, sound.start, sound.last, freq_hz=round(sound.freq))
