"""Events every engine emits (DESIGN.md section 4).

An event is a type name plus a flat payload; every one carries `t`, the stream
time in seconds of the chunk end it refers to. `to_dict()` is the JSON form the
CLI prints (one object per line) and the Wyoming server sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import constants as c


@dataclass(frozen=True)
class Event:
    type: str
    t: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "t": round(self.t, 3), **self.data}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Event":
        data = {k: v for k, v in obj.items() if k not in ("type", "t")}
        return cls(type=obj["type"], t=float(obj["t"]), data=data)


def decision(t: float, respond: bool, name: str | None = None) -> Event:
    """Per chunk: did the engine decide to respond? `name` = wake word or model."""
    data: dict[str, Any] = {"respond": respond}
    if name is not None:
        data["name"] = name
    return Event(c.EVENT_DECISION, t, data)


def response(
    t: float,
    text: str,
    *,
    final: bool,
    emotion: str | None = None,
    urgent: bool = False,
) -> Event:
    """A response: pieces of text while streaming (final=False), then the whole text (final=True).

    Every piece already carries the reply's `emotion` and `urgent` (the model says its
    emotion tag first), so a client can tell an urgent reaction from an answer at once.
    """
    return Event(c.EVENT_RESPONSE, t, {"text": text, "final": final, "emotion": emotion, "urgent": urgent})


def sound(
    t: float,
    label: str,
    score: float,
    start: float,
    end: float | None = None,
    **extra: Any,
) -> Event:
    """A household sound. `end` is None on the event sent when the sound starts."""
    if label not in c.SOUND_LABELS:
        raise ValueError(f"unknown sound label {label!r}; add it to constants.SOUND_LABELS")
    data: dict[str, Any] = {
        "label": label,
        "score": round(float(score), 4),
        "start": round(start, 3),
        "end": None if end is None else round(end, 3),
        **extra,
    }
    return Event(c.EVENT_SOUND, t, data)


def speech(t: float, state: str) -> Event:
    """Speech activity: state is "start" or "stop"."""
    if state not in ("start", "stop"):
        raise ValueError(f"speech state must be 'start' or 'stop', not {state!r}")
    return Event(c.EVENT_SPEECH, t, {"state": state})


def transcript(t: float, text: str, start: float | None = None, end: float | None = None) -> Event:
    return Event(c.EVENT_TRANSCRIPT, t, {"text": text, "start": start, "end": end})


def error(t: float, message: str, code: str = "error") -> Event:
    """A clear message for the user; the stream goes on where it can."""
    return Event(c.EVENT_ERROR, t, {"message": message, "code": code})


def shifted(event: Event, seconds: float) -> Event:
    """The same event `seconds` later in the stream: `t` and the `start`/`end` of sounds and
    transcripts (an engine stream that joined a stream late or skipped some of it counts only
    the audio it heard; the client wants the stream's own time)."""
    if not seconds:
        return event
    data = dict(event.data)
    if event.type in (c.EVENT_SOUND, c.EVENT_TRANSCRIPT):
        for key in ("start", "end"):
            if isinstance(data.get(key), (int, float)):
                data[key] = round(data[key] + seconds, 3)
    return Event(event.type, event.t + seconds, data)
