"""Responses: spoken in the room, escalated when urgent, on entities, bus and device triggers.

The lite engine answers a smoke alarm with an urgent "Smoke alarm sounding"
(so a home reacts with no model loaded); three rooms hear the same recording.
"""

from __future__ import annotations

from pytest_homeassistant_custom_component.common import async_capture_events, async_mock_service

from homeassistant.components import automation
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component

from custom_components.audio_interaction.const import BUS_EVENT_RESPONSE, DOMAIN
from ha_helpers import add_entry, room, room_of, wait_for

ALARM_REPLY = "Smoke alarm sounding"


async def test_urgent_reply(hass: HomeAssistant, audio_server, smoke_alarm_wav) -> None:
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
    speak = async_mock_service(hass, "tts", "speak")
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    send_message = async_mock_service(hass, "notify", "send_message")
    hass.states.async_set("tts.fallback", "unknown")
    hass.states.async_set("notify.hall_display", "unknown")
    responses = async_capture_events(hass, BUS_EVENT_RESPONSE)
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"urgent": {}}})
    recording = str(smoke_alarm_wav)
    entry = await add_entry(
        hass,
        audio_server,
        room("Bedroom", source=recording, media_player="media_player.bedroom", tts="tts.home", notify="notify.mobile_app_phone"),
        room("Hall", source=recording, media_player="media_player.hall", notify="notify.hall_display"),
        room("Nursery", source=recording, media_player="media_player.nursery", silent=True),
    )
    bedroom = room_of(entry, "Bedroom")
    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: {
                "trigger": {"platform": "device", "domain": DOMAIN, "device_id": bedroom.device_id, "type": "urgent_response"},
                "action": {"action": "input_boolean.turn_on", "target": {"entity_id": "input_boolean.urgent"}},
            }
        },
    )

    await wait_for(lambda: {e.data["room"] for e in responses} == {"Bedroom", "Hall", "Nursery"}, timeout=60)
    await hass.async_block_till_done()
    first = next(e for e in responses if e.data["room"] == "Bedroom")
    assert first.data["device_id"] == bedroom.device_id
    assert (first.data["text"], first.data["emotion"], first.data["urgent"]) == (ALARM_REPLY, "urgent", True)

    assert hass.states.get("input_boolean.urgent").state == STATE_ON
    assert hass.states.get("sensor.bedroom_last_response").state == ALARM_REPLY
    assert hass.states.get("sensor.bedroom_last_response").attributes["urgent"] is True
    reply = hass.states.get("event.bedroom_response")
    assert reply.attributes["event_type"] == "urgent_response"
    assert reply.attributes["text"] == ALARM_REPLY

    spoken = {call.data["media_player_entity_id"]: call.data for call in speak}
    assert spoken["media_player.bedroom"] == {
        "entity_id": "tts.home", "media_player_entity_id": "media_player.bedroom", "message": ALARM_REPLY,
    }
    assert spoken["media_player.hall"]["entity_id"] == "tts.fallback"  # no TTS chosen: HA's first one
    assert "media_player.nursery" not in spoken  # silent room

    assert phone[0].data["message"] == ALARM_REPLY
    assert phone[0].data["title"] == "Urgent: Bedroom"
    assert phone[0].data["data"]["priority"] == "high"
    assert send_message[0].data == {"entity_id": "notify.hall_display", "title": "Urgent: Hall", "message": ALARM_REPLY}
