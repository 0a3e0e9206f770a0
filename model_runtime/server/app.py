"""`audio-interaction serve`: the Wyoming server, one shared engine, one engine stream per client."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from wyoming.info import Attribution, Info, WakeModel, WakeProgram
from wyoming.server import AsyncServer, AsyncTcpServer

from .. import __version__
from .. import constants as c
from ..engine import Engine, add_engine_arguments, create_engine, create_safety_net, options_from_args
from ..errors import UserError
from ..memory import return_free_memory
from .asr import Transcriber, asr_program
from .handler import ClientHandler

_LOGGER = logging.getLogger("model_runtime.server")

DEFAULT_URI = f"tcp://0.0.0.0:{c.DEFAULT_PORT}"
DEFAULT_MAX_STREAMS = 64
DEFAULT_MAX_BACKLOG_SECONDS = 10.0
DEFAULT_FEED_MS = 100  # engine calls per stream: at most 10 a second however small the client's chunks
NET_THREADS = 1
TRIM_DELAY_S = 2.0  # after streams close, return their memory to the OS this much later
ZEROCONF_TYPE = "_wyoming._tcp.local."


def build_info(engine_name: str, wake_words: list[str]) -> Info:
    """`describe` -> this: one wake program whose models are the engine's wake words and the model's decision."""
    project = Attribution(name="Audio-Interaction", url=c.PROJECT_URL)
    models = [
        WakeModel(
            name=name,
            description=name.replace("_", " ").title(),  # what HA shows: "Okay Nabu"
            phrase=name.replace("_", " "),
            attribution=project,
            installed=True,
            languages=["en"],
            version=__version__,
        )
        for name in wake_words
        if name != c.MODEL_DECISION_NAME
    ]
    models.append(
        WakeModel(
            name=c.MODEL_DECISION_NAME,
            description="Audio-Interaction decides to respond",
            phrase=None,
            attribution=Attribution(name="zhifeixie", url=f"https://huggingface.co/{c.DEFAULT_MODEL_REPO}"),
            installed=True,
            languages=["en"],
            version=__version__,
        )
    )
    program = WakeProgram(
        name="audio-interaction",
        description=f"Audio-Interaction always-listening audio model ({engine_name} engine)",
        attribution=project,
        installed=True,
        version=__version__,
        models=models,
    )
    return Info(wake=[program], asr=[asr_program(engine_name)])  # never a satellite: HA would then load no wake platform


class WyomingServer:
    """The server: start, serve many clients, stop. Used by `serve` and by the tests in-process."""

    def __init__(
        self,
        engine: Engine | None,
        *,
        engine_name: str | None = None,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_backlog_seconds: float = DEFAULT_MAX_BACKLOG_SECONDS,
        min_feed_seconds: float = DEFAULT_FEED_MS / 1000,
        safety_net: Engine | None = None,
    ) -> None:
        """`engine` None: it is still loading (`engine_name` says which; `attach_engine` brings it),
        and meanwhile the `safety_net` alone hears the rooms."""
        if engine is None and (engine_name is None or safety_net is None):
            raise ValueError("a server whose engine is still loading needs its engine_name and a safety_net")
        self.engine = engine
        self.engine_name = engine.name if engine is not None else engine_name
        # Detectors that hear every listening stream's audio beside the engine, in a lane of their
        # own (handler.py): never behind the engine's backlog, and on when the engine fails.
        self.safety_net = safety_net
        self.info = build_info(self.engine_name, engine.wake_words() if engine is not None else [])
        self.wake_models = [m.name for m in self.info.wake[0].models]
        self.transcriber = Transcriber(self.engine_name, engine)  # the asr service's recogniser
        self.max_streams = max_streams
        self.max_backlog_seconds = max_backlog_seconds
        self.min_feed_seconds = min_feed_seconds
        # The engine's streams' calls: one thread per open stream (a slow stream holds its own thread,
        # never another's), or fewer where the engine says more would only contend (`Engine.feed_threads`).
        self.executor = None if engine is None else self._feed_executor(engine)
        # Transcriptions (`transcribe`, a whole utterance at once) never wait behind the streams' feeds.
        self.asr_executor = ThreadPoolExecutor(max_workers=max_streams, thread_name_prefix="transcribe")
        # The net's calls are short (~1 ms per 0.1 s of audio) and a SafetyNetProcess serves them one
        # at a time anyway: one thread passes every stream's to it.
        self.net_executor = ThreadPoolExecutor(max_workers=NET_THREADS, thread_name_prefix="safety-net")
        self.handlers: set[ClientHandler] = set()
        self._open_streams = 0
        self._trim: asyncio.TimerHandle | None = None
        self._server: AsyncServer | None = None
        self.address: tuple[str, int] | None = None

    def attach_engine(self, engine: Engine) -> None:
        """The engine has loaded: each open stream joins it at its next audio chunk (handler.py)."""
        if engine.name != self.engine_name:
            raise ValueError(f"this server was started for the {self.engine_name} engine, not {engine.name}")
        self.executor = self._feed_executor(engine)
        self.engine = engine  # (last: a stream joins the engine once this is set)
        self.transcriber.attach(engine)

    def _feed_executor(self, engine: Engine) -> ThreadPoolExecutor:
        threads = min(self.max_streams, engine.feed_threads or self.max_streams)
        return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="engine-stream")

    @property
    def open_streams(self) -> int:
        return self._open_streams

    def reserve_stream(self) -> bool:
        if self._open_streams >= self.max_streams:
            return False
        self._open_streams += 1
        return True

    def release_stream(self) -> None:
        self._open_streams -= 1
        if self._trim is None:  # one trim for a burst of closes
            self._trim = asyncio.get_running_loop().call_later(TRIM_DELAY_S, self._trim_memory)

    def _trim_memory(self) -> None:
        self._trim = None
        asyncio.get_running_loop().run_in_executor(None, return_free_memory)

    def _new_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> ClientHandler:
        handler = ClientHandler(self, reader, writer)
        self.handlers.add(handler)  # the handler removes itself when it ends
        return handler

    async def start(self, uri: str) -> None:
        self._server = server_for_uri(uri)
        await self._server.start(self._new_handler)
        if isinstance(self._server, AsyncTcpServer):
            sock = self._server._server.sockets[0]  # noqa: SLF001 - the port actually bound (port 0 = any)
            self.address = sock.getsockname()[:2]
        _LOGGER.info(
            "serving %s (engine %s%s, wake models: %s)",
            f"tcp://{self.address[0]}:{self.address[1]}" if self.address else uri,
            self.engine_name if self.engine is not None else f"{self.engine_name}, loading",
            "" if self.safety_net is None else f" with the {self.safety_net.name}",
            ", ".join(self.wake_models),
        )

    async def stop(self) -> None:
        """Stop accepting, end every connection, wait until each has freed its stream."""
        if self._trim is not None:
            self._trim.cancel()
        if self._server is not None:
            await self._server.stop()
        handlers = list(self.handlers)
        for handler in handlers:
            await handler.stop()
        if handlers:
            await asyncio.wait([asyncio.ensure_future(h.finished.wait()) for h in handlers], timeout=30)
        for executor in (self.executor, self.asr_executor, self.net_executor):
            if executor is None:  # (the engine was still loading)
                continue
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)


def server_for_uri(uri: str) -> AsyncServer:
    parsed = urlparse(uri)
    if parsed.scheme not in ("tcp", "unix"):
        raise UserError(f"--uri {uri!r}: use tcp://HOST:PORT (e.g. {DEFAULT_URI}) or unix:///path/to/socket")
    try:
        return AsyncServer.from_uri(uri)
    except ValueError as err:
        raise UserError(f"--uri {uri!r}: {err}; e.g. {DEFAULT_URI}") from None


class ZeroconfAdvert:
    """Announces the server as `_wyoming._tcp.local.`, as HA's own Wyoming add-ons do."""

    def __init__(self, name: str, port: int, host: str | None) -> None:
        self.name, self.port, self.host = name, port, host
        self._zc = None
        self._info = None

    async def start(self) -> None:
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        host = self.host or _local_ip()
        self._info = AsyncServiceInfo(
            ZEROCONF_TYPE,
            f"{self.name}.{ZEROCONF_TYPE}",
            addresses=[socket.inet_aton(host)],
            port=self.port,
        )
        self._zc = AsyncZeroconf()
        await self._zc.async_register_service(self._info)
        _LOGGER.info("zeroconf: advertising %s at %s:%d", self._info.name, host, self.port)

    async def stop(self) -> None:
        if self._zc is not None:
            await self._zc.async_unregister_service(self._info)
            await self._zc.async_close()


def _local_ip() -> str:
    """The address other machines reach us at: the source address of a route to the mDNS group."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("224.0.0.251", 5353))
            return sock.getsockname()[0]
        except OSError as err:
            raise UserError(f"--zeroconf: cannot find this machine's network address ({err}); "
                            "give it with --zeroconf-host") from None


# --- the CLI command ---------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", default=DEFAULT_URI, help="where to listen: tcp://HOST:PORT or unix://PATH (default %(default)s)")
    parser.add_argument("--max-streams", type=_positive_int, default=DEFAULT_MAX_STREAMS,
                        help="most audio streams open at once (default %(default)s)")
    parser.add_argument("--max-backlog-seconds", type=_positive_float, default=DEFAULT_MAX_BACKLOG_SECONDS,
                        help="audio a stream may queue for a busy engine before the backlog is skipped (default %(default)s)")
    parser.add_argument("--feed-ms", type=_non_negative_int, default=DEFAULT_FEED_MS,
                        help="hand the engine audio in pieces of at least this many ms: fewer, larger engine calls "
                             "cost less CPU, at up to this much extra delay (default %(default)s; 0: every chunk)")
    parser.add_argument("--zeroconf", nargs="?", const="audio-interaction", default=None, metavar="NAME",
                        help="advertise the server by zeroconf as _wyoming._tcp.local. (service name default audio-interaction)")
    parser.add_argument("--zeroconf-host", default=None, help="address to advertise (default: this machine's LAN address)")
    # SUPPRESS: without the flag here, the top-level `audio-interaction --debug serve` still counts.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="log debug messages")
    add_engine_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if getattr(args, "debug", False):
        logging.getLogger().setLevel(logging.DEBUG)
    server_for_uri(args.uri)  # a bad --uri fails before the engine loads
    options = options_from_args(args)
    safety_net = create_safety_net(options, own_process=True)
    # With a safety net the server listens at once and the net hears the rooms while the model
    # loads (a first start downloads gigabytes; every CPU start quantizes for half a minute).
    # Without one there is nothing to serve before the engine: it loads first, as before.
    engine = create_engine(options) if safety_net is None else None
    try:
        asyncio.run(_serve(engine, options, safety_net, args))
    finally:
        for each in (engine, safety_net):
            if each is not None:
                each.close()
    return 0


async def _serve(engine: Engine | None, options, safety_net: Engine | None, args: argparse.Namespace) -> None:
    """Serve until SIGTERM/SIGINT. `engine` None: load it in the background, serving the net meanwhile;
    a load that fails stops the server with its error (the CLI prints it)."""
    server = WyomingServer(
        engine,
        engine_name=options.engine,
        max_streams=args.max_streams,
        max_backlog_seconds=args.max_backlog_seconds,
        min_feed_seconds=args.feed_ms / 1000,
        safety_net=safety_net,
    )
    try:
        await server.start(args.uri)
    except OSError as err:
        raise UserError(f"cannot listen on {args.uri}: {err.strerror or err}") from None
    advert = None
    loading: asyncio.Future | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        if args.zeroconf:
            if server.address is None:
                raise UserError("--zeroconf needs a tcp:// --uri")
            bound = server.address[0]
            host = args.zeroconf_host or (None if bound in ("0.0.0.0", "::", "") else bound)
            advert = ZeroconfAdvert(args.zeroconf, server.address[1], host)
            await advert.start()
        if engine is None:
            started = time.monotonic()
            _LOGGER.info("loading the %s engine; until it is ready the %s alone hears the rooms",
                         options.engine, server.safety_net.name)
            loading = asyncio.ensure_future(_load_in_background(options))
            await asyncio.wait([loading, stopped], return_when=asyncio.FIRST_COMPLETED)
            if loading.done():
                server.attach_engine(loading.result())  # (a failed load raises its error here)
                _LOGGER.info("the %s engine is ready after %.0f s; open streams join it",
                             options.engine, time.monotonic() - started)
        await stopped
        _LOGGER.info("stopping")
    finally:
        stopped.cancel()
        if advert is not None:
            await advert.stop()
        await server.stop()
        if loading is not None:
            if loading.done() and not loading.cancelled() and loading.exception() is None:
                loading.result().close()
            else:
                loading.cancel()  # (the loading thread then closes what it loads)


async def _load_in_background(options) -> Engine:
    """`create_engine(options)` in a daemon thread: a stop during a long load (a download) does not
    wait for it, as a thread of the loop's executor would make `asyncio.run` do."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future = loop.create_future()

    def settle(engine: Engine | None, error: BaseException | None) -> None:
        if result.cancelled():
            if engine is not None:
                engine.close()
        elif error is not None:
            result.set_exception(error)
        else:
            result.set_result(engine)

    def load() -> None:
        engine, error = None, None
        try:
            engine = create_engine(options)
        except BaseException as err:  # noqa: BLE001 - handed to the loop, which raises it
            error = err
        try:
            loop.call_soon_threadsafe(settle, engine, error)
        except RuntimeError:  # the loop is gone: the server stopped meanwhile
            if engine is not None:
                engine.close()

    threading.Thread(target=load, name="engine-load", daemon=True).start()
    return await result


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value
