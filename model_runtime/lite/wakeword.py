"""Wake words from microWakeWord models shipped inside the `pymicro-wakeword` wheel.

A detection is a `decision` with respond=True and the wake word's name. The
models are streaming networks with internal state, so each stream runs its
own interpreter (they are ~50 kB each); the feature front end is per stream too.
"""

from __future__ import annotations

import numpy as np
from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

from .. import events
from ..audio import float_to_pcm16
from ..errors import UserError
from ..events import Event

COOLDOWN_S = 2.0  # one utterance of a wake word is one detection
FEATURE_STEP_S = 0.01


def available_wake_words() -> list[str]:
    return [m.value for m in Model]


def check_wake_words(names: list[str]) -> list[str]:
    known = available_wake_words()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown wake word {', '.join(unknown)}; the lite engine knows: {', '.join(known)}")
    return list(dict.fromkeys(names))


class WakeWordDetector:
    def __init__(self, names: list[str]) -> None:
        self._models = [MicroWakeWord.from_builtin(Model(n)) for n in names]
        self._features = MicroWakeWordFeatures()
        self._steps = 0
        self._last_hit: dict[str, float] = {}

    def process(self, audio: np.ndarray) -> list[Event]:
        out: list[Event] = []
        if not self._models:
            return out
        for features in self._features.process_streaming(float_to_pcm16(audio)):
            self._steps += 1
            t = self._steps * FEATURE_STEP_S
            for model in self._models:
                if model.process_streaming(features) and t - self._last_hit.get(model.id, -99.0) >= COOLDOWN_S:
                    self._last_hit[model.id] = t
                    out.append(events.decision(t, True, model.id))
        return out

    def close(self) -> None:
        for model in self._models:
            model.close()
