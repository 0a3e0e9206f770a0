"""CUDA graphs for the model steps of the streaming loop: capture a step's kernels once, replay them.

Why: a listening step of the 3B model is 12 new tokens per room, so on a GPU
the step is launch-bound, not compute-bound: about 1,400 kernels per LM step,
each launched from Python. Measured on an H200 (bfloat16, 1,000 tokens of
context): one room's step 29.8 ms eager, 7.4 ms replayed from a graph; eight
rooms 31.6 -> 8.1 ms; the logits identical. The audio encoder is the same story.

A graph is only valid for the tensor shapes and memory addresses it was
captured with, so each call names its layout with a `key` (for the LM: the KV
pools' storage, the rooms' slots, token counts and picks, the attention length
rounded up to a bucket) and hands over its inputs as tensors of that layout's
shapes; a replay copies them into the graph's own input tensors first. A key
is captured the second time it is seen (a layout seen once, such as an
instruction's odd token count, runs eagerly). At most `max_graphs` graphs are
kept (each holds its own GPU memory); when all are taken, a new layout replaces
the least recently used graph only if that one went unused for `STALE_RUNS`
runs, else it runs eagerly: many layouts taking turns (rooms out of step, no
batching) must not make every step a capture, which costs about three steps. A
capture that fails leaves that key eager for good: the step itself never fails
because of a graph.

One lock per `CudaGraphs`: replays and captures of one model run one at a time
(they would share the GPU anyway).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

log = logging.getLogger(__name__)

GRAPHS_KEPT = 32  # e.g. a 300 s window's attention buckets (10 of 1,024 slots) x a few room layouts
CAPTURE_AFTER = 2  # captured when a layout is seen this many times
STALE_RUNS = 1_000  # a graph unused for this many runs may make way for a new layout


@dataclass
class GraphStats:
    """How the steps ran (read by tests and the benchmarks)."""

    eager: int = 0  # layout seen too rarely (or its capture failed): ran without a graph
    captures: int = 0
    replays: int = 0
    failures: int = 0
    dropped: int = 0  # least recently used graphs freed


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    output: torch.Tensor
    last_used: int = 0  # `CudaGraphs._runs` at its last replay


class CudaGraphs:
    """Runs `fn(inputs) -> tensor` through one CUDA graph per layout key (see the module docstring)."""

    def __init__(self, max_graphs: int = GRAPHS_KEPT, capture_after: int = CAPTURE_AFTER) -> None:
        self.max_graphs = max_graphs
        self.capture_after = capture_after
        self.stats = GraphStats()
        self._graphs: OrderedDict[Hashable, _Graph] = OrderedDict()
        self._seen: dict[Hashable, int] = {}
        self._never: set[Hashable] = set()
        self._lock = threading.Lock()
        self._runs = 0

    def __len__(self) -> int:
        return len(self._graphs)

    def run(self, key: Hashable, inputs: list[torch.Tensor], fn: Callable[[list[torch.Tensor]], torch.Tensor]) -> torch.Tensor:
        """`fn(inputs)`, through the graph of `key` when there is one. `fn` must launch the same
        kernels on tensors of the same shapes every time for one key, and never read a value
        back to the host. The result is the caller's own (not the graph's output buffer)."""
        with self._lock:
            self._runs += 1
            graph = self._graphs.get(key)
            if graph is not None:
                graph.last_used = self._runs
                self._graphs.move_to_end(key)
                for static, new in zip(graph.inputs, inputs):
                    static.copy_(new)
                graph.graph.replay()
                self.stats.replays += 1
                return graph.output.clone()
            if key in self._never or self._count(key) < self.capture_after or not self._make_way():
                self.stats.eager += 1
                return fn(inputs)
            return self._capture(key, inputs, fn)

    def _make_way(self) -> bool:
        """Whether a new graph may be kept: a free place, or a stale graph dropped for it."""
        if len(self._graphs) < self.max_graphs:
            return True
        oldest = next(iter(self._graphs.values()))
        if self._runs - oldest.last_used < STALE_RUNS:
            return False
        self._graphs.popitem(last=False)
        self.stats.dropped += 1
        return True

    def _count(self, key: Hashable) -> int:
        if len(self._seen) > 16 * self.max_graphs:  # keys of layouts long gone: forget them
            self._seen.clear()
        self._seen[key] = self._seen.get(key, 0) + 1
        return self._seen[key]

    def _capture(self, key: Hashable, inputs: list[torch.Tensor], fn) -> torch.Tensor:
        """Run the step once (the warm-up a capture wants), then capture it for the next times."""
        static = [t.clone() for t in inputs]
        result = self._warm_up(fn, static)  # this call's result: the step ran here
        try:
            graph, output = self._record(fn, static)
        except Exception as err:  # noqa: BLE001 - an uncapturable layout runs eagerly from now on
            log.warning("CUDA graph capture failed for a model step (it runs without a graph): %s", err)
            self.stats.failures += 1
            self._never.add(key)
            return result
        self.stats.captures += 1
        self._graphs[key] = _Graph(graph, static, output, self._runs)
        return result

    @staticmethod
    def _warm_up(fn, static: list[torch.Tensor]) -> torch.Tensor:
        """`fn(static)` on a side stream, as graph capture wants its first run (lazy initialisations)."""
        current = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        side.wait_stream(current)
        with torch.cuda.stream(side):
            result = fn(static)
        current.wait_stream(side)
        result.record_stream(current)  # made on the side stream, read on this one
        return result

    @staticmethod
    def _record(fn, static: list[torch.Tensor]):
        """Capture `fn(static)` (nothing runs); returns the graph and the tensor its replays write."""
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: other rooms' threads may use the GPU meanwhile (e.g. the audio encoder)
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                output = fn(static)
        except Exception:
            torch.cuda.synchronize()
            raise
        return graph, output
