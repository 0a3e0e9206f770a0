"""What keeps a room from hearing on the server's side, told to the user as repair issues.

A room that hears nothing must never look fine (room.py's connection loop acts;
this says so): the server unreachable for long, the server turning the room's
stream away (at its `max_streams`), the server skipping the room's audio
because it cannot keep up. Each issue clears itself once the cause is gone.
The audio source's own issues live with the source (source.py).
"""

from __future__ import annotations

from collections import deque
import logging
import time
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_call_later

from . import const

_LOGGER = logging.getLogger(__name__)


class RoomHealth:
    """One room's repair issues about its server, and what they need to be raised or cleared."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, subentry_id: str, room_name: str) -> None:
        self.hass = hass
        self.room_name = room_name
        self._busy = False  # the server turned the room's last stream away
        self._unreachable_since: float | None = None
        self._skips: deque[tuple[float, float]] = deque()  # (when, seconds) the server skipped, in the window
        self._behind_timer: CALLBACK_TYPE | None = None
        self._busy_issue = f"server_busy_{subentry_id}"
        self._behind_issue = f"server_behind_{subentry_id}"
        self._unreachable_issue = f"server_unreachable_{entry.entry_id}"  # (the server's: each room sees the same)

    @callback
    def unreachable(self, host: str, port: int, reason: str) -> None:
        """A connection failed; after SERVER_UNREACHABLE_FOR_REPAIR of failures, a repair issue."""
        now = time.monotonic()
        self._unreachable_since = self._unreachable_since or now
        if now - self._unreachable_since >= const.SERVER_UNREACHABLE_FOR_REPAIR:
            self._raise(
                self._unreachable_issue, "server_unreachable", host=host, port=str(port), reason=reason,
                seconds=f"{const.SERVER_UNREACHABLE_FOR_REPAIR:.0f}",
            )

    @callback
    def reached(self) -> None:
        """A connection opened."""
        if self._unreachable_since is not None:
            self._unreachable_since = None
            ir.async_delete_issue(self.hass, const.DOMAIN, self._unreachable_issue)

    @callback
    def turned_away(self, host: str, port: int, reason: str) -> None:
        """The server refused the room's stream (too many streams): not a fault that passes in seconds."""
        if not self._busy:
            _LOGGER.warning("Room %s: the server at %s:%s turned it away: %s; asking again every %.0f s",
                            self.room_name, host, port, reason, const.SERVER_BUSY_RETRY)
        self._busy = True
        self._raise(self._busy_issue, "server_busy", host=host, port=str(port), reason=reason,
                    retry=f"{const.SERVER_BUSY_RETRY:.0f}")

    @callback
    def stream_taken(self) -> None:
        """The room's stream stayed open long enough: the server took it."""
        if self._busy:
            self._busy = False
            _LOGGER.info("Room %s: the server took its stream", self.room_name)
        ir.async_delete_issue(self.hass, const.DOMAIN, self._busy_issue)

    @callback
    def fell_behind(self, message: str, seconds: float) -> None:
        """The server skipped `seconds` of the room's audio (it cannot keep up: a model too slow for the
        machine, too many rooms). Said once in the log per episode, a repair issue once it adds up;
        both end after a whole SKIPPED_WINDOW without a skip."""
        now = time.monotonic()
        self._skips.append((now, seconds))
        while self._skips and self._skips[0][0] < now - const.SKIPPED_WINDOW:
            self._skips.popleft()
        if len(self._skips) == 1:
            _LOGGER.warning("Room %s: the server reports: %s", self.room_name, message)
        skipped = sum(each for _, each in self._skips)
        if skipped >= const.SKIPPED_SECONDS_FOR_REPAIR:
            self._raise(self._behind_issue, "server_behind", seconds=f"{skipped:.0f}",
                        minutes=f"{const.SKIPPED_WINDOW / 60:.0f}", reason=message)
        if self._behind_timer is not None:
            self._behind_timer()
        self._behind_timer = async_call_later(self.hass, const.SKIPPED_WINDOW, self._caught_up)

    @callback
    def clear(self) -> None:
        """The room is unloaded: it waits for its server no more."""
        if self._behind_timer is not None:
            self._behind_timer()
            self._behind_timer = None
        for issue_id in (self._busy_issue, self._unreachable_issue, self._behind_issue):
            ir.async_delete_issue(self.hass, const.DOMAIN, issue_id)

    @callback
    def _caught_up(self, _now: Any) -> None:
        self._behind_timer = None
        self._skips.clear()
        ir.async_delete_issue(self.hass, const.DOMAIN, self._behind_issue)

    def _raise(self, issue_id: str, translation_key: str, **placeholders: str) -> None:
        ir.async_create_issue(
            self.hass,
            const.DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key=translation_key,
            translation_placeholders={"room": self.room_name, **placeholders},
        )
