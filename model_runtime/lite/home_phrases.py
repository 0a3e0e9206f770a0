"""A home's spoken commands as a PocketSphinx grammar (what Home Assistant's Speech-to-Phrase does).

PocketSphinx's general English language model mishears short commands ("turn
on the kitchen light" -> "come on the kitchen like"). A home only says a few
kinds of command over its own device and area names, so a grammar of those
sentences, built from the names Home Assistant exposes, constrains the search
to what can be meant. The templates follow Home Assistant's built-in English
intents (HassTurnOn/Off, HassLightSet, HassClimateGetTemperature, locks and
covers, HassGetState, timers, time, weather).

A grammar forces every utterance into one of its sentences, so the
recogniser (transcribe.py) keeps the general model's result unless the
grammar's sentence is complete and fits the audio about as well as free
speech does (`GrammarFit.accepted`); the thresholds were measured on generated speech
(README, "Use with Assist satellites").

Names with words the pronouncing dictionary lacks: a word made of
dictionary words ("hallwaylight", "tvroom") is given their joined
pronunciations; any other such name is left out of the grammar (logged), and
commands about it are heard by the general model only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_LOGGER = logging.getLogger(__name__)

# A grammar sentence is taken only if its words' acoustic score per frame is at least this
# (pocketsphinx normalises scores per frame to the best senone, so 0 is a perfect fit) ...
MIN_FRAME_SCORE = -2.45
# ... and at most this much worse per frame than what the general language model heard.
MAX_LOSS_TO_FREE_SPEECH = 0.35

_ONES = "one two three four five six seven eight nine".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_DIGIT_WORDS = ["zero", *_ONES]

# name -> JSGF expansion over the home's rules; <name> and <area> come from the home.
_RULES = {
    "number": f"({' | '.join(['zero', *_ONES, *_TEENS])} | ({' | '.join(_TENS)}) [{' | '.join(_ONES)}] | one hundred)",
    "onoff": "(on | off)",
    "turn": "(turn | switch)",
    "what_is": "(what is | what's)",
}
_SENTENCES = (
    "<turn> <onoff> [the] <name>",
    "<turn> [the] <name> <onoff>",
    "<turn> <onoff> [all] [the] (light | lights) in [the] <area>",
    "<turn> <onoff> [the] <area> (light | lights)",
    "<turn> <onoff> all [of] the lights",
    "set [the] <name> [brightness] to <number> [percent]",
    "set [the] brightness of [the] <name> to <number> [percent]",
    "<what_is> the temperature [in [the] <area>]",
    "set the temperature [in [the] <area>] to <number> [degrees]",
    "(open | close | lock | unlock) [the] <name>",
    "is [the] <name> (on | off | open | closed | locked | unlocked)",
    "set a timer for <number> (second | seconds | minute | minutes | hour | hours)",
    "cancel [the] timer",
    "what time is it",
    "<what_is> the weather [like] [today]",
)


def spoken(name: str) -> str:
    """A name as its words are spoken: lower case, digits as words, no punctuation ("Bedroom_2" -> "bedroom two")."""
    text = re.sub(r"(\d+)", lambda m: " " + " ".join(_DIGIT_WORDS[int(d)] for d in m.group(1)) + " ", name.lower())
    return " ".join(re.sub(r"[^a-z' ]+", " ", text).split())


@dataclass(frozen=True)
class HomeVocabulary:
    """What a home's commands can name: its exposed devices (and their aliases) and its areas."""

    names: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()

    @classmethod
    def of(cls, names: Iterable[str], areas: Iterable[str] = ()) -> "HomeVocabulary":
        def clean(values: Iterable[str]) -> tuple[str, ...]:
            return tuple(sorted({s for v in values if isinstance(v, str) and (s := spoken(v))}))

        return cls(clean(names), clean(areas))

    def __bool__(self) -> bool:
        return bool(self.names or self.areas)

    @property
    def key(self) -> str:
        return hashlib.sha1(repr((self.names, self.areas)).encode()).hexdigest()[:12]


@dataclass
class HomeGrammar:
    """A vocabulary's JSGF grammar and the test of whether a hypothesis is one of its whole sentences."""

    jsgf: str
    pattern: re.Pattern[str]
    left_out: list[str] = field(default_factory=list)  # names with words that have no pronunciation

    def complete(self, text: str) -> bool:
        return bool(text) and self.pattern.fullmatch(text.strip() + " ") is not None


def build_grammar(home: HomeVocabulary, pronounce: Callable[[str], bool]) -> HomeGrammar | None:
    """The home's grammar; `pronounce(word)` says whether the decoder can say a word (it may add it).
    None when no name is left to build sentences over."""
    left_out: list[str] = []

    def usable(values: tuple[str, ...]) -> list[str]:
        kept = []
        for value in values:
            if all(pronounce(word) for word in value.split()):
                kept.append(value)
            else:
                left_out.append(value)
        return kept

    names, areas = usable(home.names), usable(home.areas)
    if left_out:
        _LOGGER.info("speech-to-text: no pronunciation for %s; commands naming them use the general model", left_out)
    if not names and not areas:
        return None
    rules = dict(_RULES)
    # A grammar rule cannot be empty: a home without areas gets a never-spoken placeholder out of the
    # sentences that need one (the sentences are dropped instead).
    sentences = [s for s in _SENTENCES if ("<name>" not in s or names) and ("<area>" not in s or areas)]
    if names:
        rules["name"] = "(" + " | ".join(names) + ")"
    if areas:
        rules["area"] = "(" + " | ".join(areas) + ")"
    lines = ["#JSGF V1.0;", "grammar home;"]
    lines += [f"<{rule}> = {body};" for rule, body in rules.items()]
    lines.append("public <command> = " + " | ".join(f"({s})" for s in sentences) + ";")
    regex_rules: dict[str, str] = {}
    for rule, body in rules.items():
        regex_rules[rule] = _to_regex(body, regex_rules)
    pattern = re.compile("(?:" + "|".join(_to_regex(s, regex_rules) for s in sentences) + ")")
    return HomeGrammar("\n".join(lines) + "\n", pattern, left_out)


def _to_regex(expansion: str, rules: dict[str, str]) -> str:
    """A JSGF expansion (words, ( | ), [ ], <rule>) as a regex over words each followed by one space."""
    out = []
    for token in re.findall(r"<\w+>|[()\[\]|]|[^\s()\[\]|<>]+", expansion):
        if token.startswith("<"):
            out.append("(?:" + rules[token[1:-1]] + ")")
        elif token in "([":
            out.append("(?:")
        elif token == ")":
            out.append(")")
        elif token == "]":
            out.append(")?")
        elif token == "|":
            out.append("|")
        else:
            out.append(re.escape(token) + " ")
    return "".join(out)


def compound_pronunciation(word: str, lookup: Callable[[str], str | None]) -> str | None:
    """Phones of `word` as dictionary words written together ("hallwaylight" -> hallway + light), fewest parts."""
    best: list[list[str] | None] = [[]] + [None] * len(word)
    for end in range(2, len(word) + 1):
        for start in range(0, end - 1):
            prefix = best[start]
            if prefix is None or (best[end] is not None and len(best[end]) <= len(prefix) + 1):
                continue
            phones = lookup(word[start:end])
            if phones:
                best[end] = [*prefix, phones]
    parts = best[len(word)]
    return " ".join(parts) if parts else None


@dataclass(frozen=True)
class GrammarFit:
    """How well the grammar's best sentence fits the audio (log acoustic scores per 10 ms frame)."""

    frame_score: float  # the sentence's own score per frame
    loss: float  # how much worse per frame than the general model's words (negative: better)

    @classmethod
    def of(cls, grammar_score: float, free_score: float, frames: int) -> "GrammarFit":
        frames = max(frames, 1)
        return cls(grammar_score / frames, (free_score - grammar_score) / frames)

    @property
    def accepted(self) -> bool:
        """Whether a complete grammar sentence is taken over the general model's words."""
        return self.frame_score >= MIN_FRAME_SCORE and self.loss <= MAX_LOSS_TO_FREE_SPEECH
