"""The Wyoming server: standard Wyoming wake word detection plus our own audio-interaction events.

`app` (the `serve` command, `WyomingServer`), `handler` (one client connection),
`session` (one stream's engine work off the event loop, bounded backlog),
`audio_in` (any PCM format -> 16 kHz mono), `framing` (bounded frame reading).
"""

from .app import WyomingServer, build_info

__all__ = ["WyomingServer", "build_info"]
