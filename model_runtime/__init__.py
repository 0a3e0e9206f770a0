"""Runtime and Wyoming server for the Audio-Interaction streaming audio-language model."""

__version__ = "0.1.0"
