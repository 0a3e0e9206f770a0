"""The lite engine: CPU only, nothing to download."""

from __future__ import annotations

__all__ = ["LiteEngine", "LiteStream"]


def __getattr__(name: str):
    # Imported on first use: the speech recognizer's child process imports lite.recognizer, and
    # must not load the engine's detectors (their models cost it ~90 MiB) on the way.
    if name in __all__:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
