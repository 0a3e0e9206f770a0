"""`bench load`: the engine's start and a stream on a checkpoint, with the process's memory sampled throughout."""

from __future__ import annotations

import pytest

from model_runtime.errors import UserError
from model_runtime.interaction import bench_load


def test_bench_load_starts_the_engine_and_streams_on_a_checkpoint(tiny_checkpoint, capsys):
    figures = bench_load.measure(str(tiny_checkpoint), "float32", "int8-dynamic", seconds=2.0)
    assert figures["decisions"] == 5  # one per 0.4 s chunk
    for phase in ("start", "stream"):
        took, peak, after = figures[phase]
        assert took > 0
        # the sampled peak is at least what is held at the end; the process holds memory of its own
        assert peak["RssAnon"] >= after["RssAnon"] > 0
    bench_load.print_figures(figures, "int8-dynamic")
    out = capsys.readouterr().out
    assert "5 chunks through one room" in out and "RTF" in out


def test_bench_load_says_so_when_nothing_was_decided(tiny_checkpoint):
    with pytest.raises(UserError, match="decided no chunk"):
        bench_load.measure(str(tiny_checkpoint), "float32", "none", seconds=0.0)  # no audio: no chunk
