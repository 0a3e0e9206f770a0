"""Constants for the Audio-Interaction integration."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

DOMAIN: Final = "audio_interaction"

# --- Copied from model_runtime/constants.py -----------------------------------
# Home Assistant runs in its own Python environment and cannot import the
# runtime package, so the few wire-protocol names we need are copied here.
# model_runtime/constants.py stays the one source of truth:
# tests/ha/test_constants_in_step.py parses it and fails if a copy drifts.
SAMPLE_RATE: Final = 16_000
WYOMING_EVENT_PREFIX: Final = "audio-interaction-"
WYOMING_LISTEN: Final = WYOMING_EVENT_PREFIX + "listen"  # data: {"room": str | None}
WYOMING_INSTRUCT: Final = WYOMING_EVENT_PREFIX + "instruct"  # data: {"text": str}
MODEL_DECISION_NAME: Final = "audio_interaction"
WYOMING_ERROR_TOO_MANY_STREAMS: Final = "too-many-streams"  # the server is at its --max-streams
WYOMING_ERROR_AUDIO_SKIPPED: Final = "audio-skipped"  # the engine fell behind: the waiting audio was dropped
WYOMING_ERROR_ENGINE_FAILED: Final = "engine-failed"  # the engine raised: the stream hears nothing until audio-start
DEFAULT_PORT: Final = 10500
EVENT_DECISION: Final = "decision"
EVENT_RESPONSE: Final = "response"
EVENT_SOUND: Final = "sound"
EVENT_SPEECH: Final = "speech"
EVENT_TRANSCRIPT: Final = "transcript"
EVENT_ERROR: Final = "error"
# The server refuses more of a home's names than these (model_runtime/constants.py): we send no more.
MAX_TRANSCRIPT_NAMES: Final = 2000
MAX_TRANSCRIPT_NAME_CHARS: Final = 100
WYOMING_ERROR_MODEL_LOADING: Final = "model-loading"  # a notice: the safety net alone hears the room meanwhile
SOUND_LABELS: Final = (
    "smoke_alarm",
    "co_alarm",
    "beeping",
    "glass_break",
    "knock",
    "doorbell",
    "dog_bark",
    "cat_meow",
    "baby_cry",
    "cough",
    "sneeze",
    "scream",
    "water_running",
    "music",
    "speech",
    "loud_noise",
)
ALARM_LABELS: Final = ("smoke_alarm", "co_alarm")  # they sound for a while: a start event, then an end
# -------------------------------------------------------------------------------

# Audio sent to the server: 16-bit mono PCM at SAMPLE_RATE.
SAMPLE_WIDTH: Final = 2
CHANNELS: Final = 1
# Bytes per audio-chunk event: 0.1 s, small enough that a reply is never late
# because audio sat in a buffer.
CHUNK_BYTES: Final = SAMPLE_RATE * SAMPLE_WIDTH // 10

# Config entry (the server) and room subentries.
SUBENTRY_ROOM: Final = "room"
CONF_CAMERA: Final = "camera"
CONF_SOURCE: Final = "source"
CONF_MEDIA_PLAYER: Final = "media_player"
CONF_TTS: Final = "tts"
CONF_NOTIFY: Final = "notify"
CONF_SILENT: Final = "silent"
CONF_COMMANDS: Final = "commands"  # carry out spoken requests through Assist
# A room whose audio comes from an Assist satellite's pipeline (its wake-word stage); replies are announced there.
CONF_SATELLITE: Final = "assist_satellite"

# Bus events for YAML users and Node-RED; device triggers listen to them too.
BUS_EVENT_SOUND: Final = "audio_interaction_sound"
BUS_EVENT_RESPONSE: Final = "audio_interaction_response"

# Device trigger types: "<label>_detected" per sound label, plus these two.
TRIGGER_RESPONDED: Final = "responded"
TRIGGER_URGENT_RESPONSE: Final = "urgent_response"
SOUND_TRIGGER_SUFFIX: Final = "_detected"

# Response event entity types.
RESPONSE_EVENT_TYPES: Final = ("response", "urgent_response")

# Services.
SERVICE_INSTRUCT: Final = "instruct"
SERVICE_ANALYZE_FILE: Final = "analyze_file"
ATTR_ROOM: Final = "room"
ATTR_TEXT: Final = "text"
ATTR_FILE: Final = "file"
ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"

# Reconnect / restart backoff, seconds: doubles from MIN to MAX. MAX stays
# well under 10 s so streaming resumes within 10 s of the server returning.
BACKOFF_MIN: Final = 0.5
BACKOFF_MAX: Final = 4.0
# A failing audio source is retried with the same doubling, up to this.
SOURCE_BACKOFF_MAX: Final = 30.0
# An audio source that fails this many times in a row raises a repair issue.
SOURCE_FAILURES_FOR_REPAIR: Final = 5
# A server unreachable this long raises a repair issue (an add-on restart takes less).
SERVER_UNREACHABLE_FOR_REPAIR: Final = 120.0
# A server that skipped this much of a room's audio (it fell behind) within the window raises a
# repair issue; it clears once a whole window passes without a skip.
SKIPPED_SECONDS_FOR_REPAIR: Final = 20.0
SKIPPED_WINDOW: Final = 600.0
# How often the names exposed to Assist are compared with what the rooms' streams have (a change
# is sent at once: the requests after a wake word are transcribed with the home's names).
NAMES_REFRESH_INTERVAL: Final = timedelta(seconds=60)
# A server at its stream limit turned the room away: it asks again this often.
SERVER_BUSY_RETRY: Final = 30.0

# Dispatcher signal a room sends when its state changes: format with the subentry id.
SIGNAL_ROOM_UPDATED: Final = f"{DOMAIN}_room_updated_{{}}"
