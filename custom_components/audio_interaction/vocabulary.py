"""What a spoken command can name in this home, sent with each speech-to-text request
and with each room's `audio-interaction-listen` (for the requests the lite engine
transcribes after a wake word; the names as they are when the room connects, and
again whenever they change: compared every NAMES_REFRESH_INTERVAL).

The server biases its recogniser to the home's commands over these names (as
Speech-to-Phrase does): the names of the entities exposed to Assist and their
aliases, and the areas with theirs, exactly the lists HA's default
conversation agent matches sentences against. They travel in Wyoming's
`transcribe` fields for it: `transcript_names` (entity names) and
`transcript_terms` (area names); the wyoming package HA pins predates those
fields, so the event is written out here.
"""

from __future__ import annotations

from wyoming.asr import Transcribe
from wyoming.event import Event

from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import area_registry as ar, entity_registry as er

from .const import MAX_TRANSCRIPT_NAME_CHARS, MAX_TRANSCRIPT_NAMES

ASSISTANT = "conversation"  # the assistant whose exposed entities HA's default agent uses


@callback
def exposed_names(hass: HomeAssistant) -> tuple[list[str], list[str]]:
    """(entity names and aliases exposed to Assist, area names and aliases), each sorted, without repeats."""
    if "homeassistant" not in hass.config.components:
        return [], []  # (HA's core integration keeps what is exposed: without it, nothing is)
    entities = er.async_get(hass)
    names: set[str] = set()
    for state in hass.states.async_all():
        if not async_should_expose(hass, ASSISTANT, state.entity_id):
            continue
        names.add(state.name)
        if (entry := entities.async_get(state.entity_id)) is not None:
            names.update(entry.aliases)
    areas: set[str] = set()
    for area in ar.async_get(hass).async_list_areas():
        areas.add(area.name)
        areas.update(area.aliases)
    return _within_limits(names), _within_limits(areas)


def _within_limits(values: set[str]) -> list[str]:
    """Sorted, stripped, without blanks and within what the server takes (a longer name is left
    out; beyond the count the rest: their commands are heard by the general model alone)."""
    kept = sorted({v.strip() for v in values if v and v.strip() and len(v.strip()) <= MAX_TRANSCRIPT_NAME_CHARS})
    return kept[:MAX_TRANSCRIPT_NAMES]


@callback
def transcribe_event(hass: HomeAssistant, language: str | None) -> Event:
    """The `transcribe` request, with the home's names for the server's command grammar."""
    names, areas = exposed_names(hass)
    event = Transcribe(language=language).event()
    return Event(type=event.type, data={**(event.data or {}), "transcript_names": names, "transcript_terms": areas})
