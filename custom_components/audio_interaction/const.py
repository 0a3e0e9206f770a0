"""Constants for the Audio-Interaction integration."""

DOMAIN = "audio_interaction"
