"""`audio-interaction serve` as a user runs it: a real subprocess, zeroconf, signals, bad options."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from model_runtime import cli
from model_runtime import constants as c

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_runtime", "serve", *args],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )
    deadline = time.monotonic() + 60
    while "serving tcp://" not in log.read_text():
        assert proc.poll() is None, f"server exited: {log.read_text()}"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)
    return proc, log


@contextlib.contextmanager
def serving(tmp_path: Path, *args: str):
    """A started `serve` subprocess and its log; killed at the end if it still runs."""
    proc, log = start_server(tmp_path, *args)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.kill()


def stop_cleanly(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


async def describe(port: int) -> Info:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        return Info.from_event(await asyncio.wait_for(client.read_event(), 5))


async def zeroconf_lookup(name: str) -> AsyncServiceInfo | None:
    zc = AsyncZeroconf()
    try:
        info = AsyncServiceInfo("_wyoming._tcp.local.", f"{name}._wyoming._tcp.local.")
        return info if await info.async_request(zc.zeroconf, 5000) else None
    finally:
        await zc.async_close()


async def test_serve_answers_advertises_by_zeroconf_logs_and_stops_on_sigterm(tmp_path):
    port = free_port()
    name = f"ai-test-{os.getpid()}"
    with serving(tmp_path, "--uri", f"tcp://127.0.0.1:{port}", "--zeroconf", name, "--debug") as (proc, log):
        info = await describe(port)
        assert [m.name for m in info.wake[0].models][-1] == c.MODEL_DECISION_NAME
        advert = await zeroconf_lookup(name)
        assert advert is not None and advert.port == port and advert.parsed_addresses() == ["127.0.0.1"]
        stop_cleanly(proc)
    text = log.read_text()
    assert "Traceback" not in text
    assert text.count(" connected (") == 1 and text.count(" disconnected after ") == 1
    assert "zeroconf: advertising" in text and "stopping" in text


def test_bad_options_fail_with_one_clear_line(capsys):
    # In-process: the same cli.main a user runs, without paying for a Python start per case.
    for args, words in (
        (["--uri", "http://localhost:1"], "use tcp://HOST:PORT"),
        (["--uri", "tcp://localhost"], "port"),
        (["--max-streams", "0"], "must be at least 1"),
        (["--max-backlog-seconds", "-1"], "must be above 0"),
    ):
        try:
            code = cli.main(["serve", *args])
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert words in err and "Traceback" not in err


def test_a_taken_port_is_a_clear_error(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code = cli.main(["serve", "--uri", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot listen on tcp://127.0.0.1:{port}" in err and "Traceback" not in err


def test_the_cli_lets_idle_openmp_threads_sleep(monkeypatch):
    """OMP_WAIT_POLICY=PASSIVE is set before any command loads torch, unless the user chose a policy."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


async def test_serve_with_the_model_listens_while_it_loads_then_uses_it(tmp_path, tiny_checkpoint):
    port = free_port()
    model = ("--engine", "audio-interaction", "--model", str(tiny_checkpoint), "--device", "cpu")
    with serving(tmp_path, "--uri", f"tcp://127.0.0.1:{port}", *model) as (proc, log):
        info = await describe(port)  # answered whether or not the model is loaded yet
        assert [m.name for m in info.wake[0].models] == [c.MODEL_DECISION_NAME]
        deadline = time.monotonic() + 60
        while "engine is ready after" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        stop_cleanly(proc)
    text = log.read_text()
    assert "loading the audio-interaction engine; until it is ready the safety-net alone hears the rooms" in text
    assert "with the safety-net" in text and "Traceback" not in text


def test_serve_with_a_model_that_fails_to_load_stops_with_its_error(tmp_path):
    port = free_port()
    model = ("--engine", "audio-interaction", "--model", str(tmp_path / "no-such-model"), "--device", "cpu")
    with serving(tmp_path, "--uri", f"tcp://127.0.0.1:{port}", *model) as (proc, log):
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 2, text
    assert "checkpoint folder not found" in text and "Traceback" not in text


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _alive(int(entry)):
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append((int(entry), cmdline))
    return found


def _alive(pid: int) -> bool:
    """Running, not gone and not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_servers_recognizer_process_ends_with_it(tmp_path):
    """A server killed outright (SIGKILL: the OOM killer, a supervisor's last resort) cannot stop its
    speech recognizer's process, which used to wait for requests forever (~120 MB each time): it
    notices its parent is gone and exits."""
    with serving(tmp_path, "--uri", f"tcp://127.0.0.1:{free_port()}") as (proc, _):
        deadline = time.monotonic() + 30
        while not (workers := [pid for pid, cmd in _children(proc.pid) if "spawn_main" in cmd]):
            assert time.monotonic() < deadline, f"no recognizer process: {_children(proc.pid)}"
            time.sleep(0.1)
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
