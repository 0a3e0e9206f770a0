"""The one source of truth for token ids, audio layout, event names and sound labels.

Everything here is a public fact of the upstream Audio-Interaction release
(see shared DESIGN.md section 2) or part of our own event contract (section 4).
Other modules import these names; nobody writes the numbers again.
"""

from __future__ import annotations

# --- Audio layout -----------------------------------------------------------
SAMPLE_RATE = 16_000
CHUNK_SECONDS = 0.4
CHUNK_SAMPLES = 6_400  # 0.4 s at 16 kHz
N_MELS = 128
N_FFT = 400
HOP_LENGTH = 160
MEL_FRAMES_PER_CHUNK = CHUNK_SAMPLES // HOP_LENGTH  # 40
AUDIO_VECTORS_PER_CHUNK = 10  # encoder output per 40-frame chunk
# Whisper's log-mel normalisation: floor at (max - 8), then (x + 4) / 4.
LOG_MEL_DYNAMIC_RANGE = 8.0

# --- Special token ids (Qwen vocabulary; 151600 is the shift) ---------------
TEXT_END = 151643
TEXT_BEGIN = 151644
SYSTEM = 151644  # upstream reuses TEXT_BEGIN as the SYSTEM marker
AUDIO_PAD = 151646
AUDIO_BEGIN = 151647
AUDIO_END = 151648
USER = 151601
ASSISTANT = 151602
KEEP_SILENCE = 151605
PAD = 151608
ONLINE = 151609
OFFLINE = 151610
ENGLISH = 151611
HAPPY = 151614
SAD = 151615
ANGRY = 151616
SURPRISE = 151617
NORMAL = 151618
URGENT = 151619

EMOTION_TOKENS: dict[int, str] = {
    HAPPY: "happy",
    SAD: "sad",
    ANGRY: "angry",
    SURPRISE: "surprise",
    NORMAL: "normal",
    URGENT: "urgent",
}
# Tokens appended for every 0.4 s chunk while listening: AUDIO_BEGIN, 10 audio
# positions (PAD embeddings replaced by encoder vectors), ASSISTANT.
TOKENS_PER_CHUNK = 1 + AUDIO_VECTORS_PER_CHUNK + 1  # 12
HIGHEST_SPECIAL_TOKEN = URGENT

DEFAULT_MODEL_REPO = "zhifeixie/AudioInteraction"
# Upstream's default system prompt (online mode).
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant that listens to the audio stream. Answer the "
    "questions you hear in the audio. For sound effects, decide from the sound "
    "whether the people at home need help, and respond only when they do."
)
# What upstream's training data uses as the target of a silent turn.
NO_RESPONSE_TEXT = "<no need to response>"

# --- Engines ------------------------------------------------------------------
ENGINE_LITE = "lite"
ENGINE_AUDIO_INTERACTION = "audio-interaction"
ENGINES = (ENGINE_LITE, ENGINE_AUDIO_INTERACTION)
# The big engine's weight formats (--quantize; interaction/quantize.py).
QUANTIZE_MODES = ("none", "int8", "int8-dynamic")
DEFAULT_ENGINE = ENGINE_LITE
# The name a `decision`/wake detection carries when the big model decided to respond.
MODEL_DECISION_NAME = "audio_interaction"

# --- Event contract (DESIGN.md section 4): names are stable -------------------
EVENT_DECISION = "decision"
EVENT_RESPONSE = "response"
EVENT_SOUND = "sound"
EVENT_SPEECH = "speech"
EVENT_TRANSCRIPT = "transcript"
EVENT_ERROR = "error"
EVENT_TYPES = (
    EVENT_DECISION,
    EVENT_RESPONSE,
    EVENT_SOUND,
    EVENT_SPEECH,
    EVENT_TRANSCRIPT,
    EVENT_ERROR,
)

# Household-sound vocabulary: extend, never rename.
SOUND_LABELS = (
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
ALARM_LABELS = ("smoke_alarm", "co_alarm")

# --- Wyoming protocol: our own event types beside the standard ones -----------
# A client sends WYOMING_LISTEN once at stream start to receive our events; each
# engine event of type X then arrives as Wyoming event WYOMING_EVENT_PREFIX + X
# with the event's fields (t included) as its data.
WYOMING_EVENT_PREFIX = "audio-interaction-"
WYOMING_LISTEN = WYOMING_EVENT_PREFIX + "listen"  # data: {"room": str | None}
WYOMING_INSTRUCT = WYOMING_EVENT_PREFIX + "instruct"  # data: {"text": str}
DEFAULT_PORT = 10500
# Codes of the standard Wyoming `error` event (data: text, code) the server sends.
# A home's names (`transcript_names` / `transcript_terms` of transcribe and listen) beyond these
# are refused: the command grammar and its compile time stay small. (HA's integration keeps within.)
MAX_TRANSCRIPT_NAMES = 2000
MAX_TRANSCRIPT_NAME_CHARS = 100
WYOMING_ERROR_MALFORMED_FRAME = "malformed-frame"  # not a Wyoming frame
WYOMING_ERROR_FRAME_TOO_LARGE = "frame-too-large"  # header/data/payload over the limits
WYOMING_ERROR_UNKNOWN_EVENT = "unknown-event"  # an event type this server does not handle
WYOMING_ERROR_BAD_EVENT = "bad-event"  # a known event with missing or invalid data
WYOMING_ERROR_AUDIO_FORMAT = "audio-format"  # rate/width/channels that cannot be converted
WYOMING_ERROR_AUDIO_BEFORE_START = "audio-before-start"  # audio-chunk/stop without audio-start
WYOMING_ERROR_UNKNOWN_WAKE_WORD = "unknown-wake-word"  # detect names none of the served models
WYOMING_ERROR_AUDIO_SKIPPED = "audio-skipped"  # the engine fell behind: backlog dropped
WYOMING_ERROR_TOO_MANY_STREAMS = "too-many-streams"  # server at --max-streams
WYOMING_ERROR_TOO_MANY_ERRORS = "too-many-errors"  # connection closed after repeated errors
WYOMING_ERROR_ENGINE_FAILED = "engine-failed"  # the engine raised; that stream stops
WYOMING_ERROR_MODEL_LOADING = "model-loading"  # the model is still loading: the safety net alone hears the stream
WYOMING_ERROR_TRANSCRIBE_FAILED = "transcribe-failed"  # the speech recognizer failed on a request; send it again
WYOMING_ERROR_INTERNAL = "internal-error"  # a server bug; that connection is closed
PROJECT_URL = "https://github.com/audio-interaction/home-assistant"
