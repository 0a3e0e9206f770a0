"""The lite engine: CPU only, nothing to download."""

from .engine import LiteEngine, LiteStream

__all__ = ["LiteEngine", "LiteStream"]
