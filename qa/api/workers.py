"""``qa serve --workers N``: N uvicorn worker processes, each accepting on a listening socket of its own.

uvicorn's supervisor binds one socket and every worker accepts from it. A worker that wakes to new
connections accepts all that are waiting, so when a client pool (a load balancer, a bot, a benchmark)
opens its keep-alive connections at once, most of them land on one worker: 24, 25, 27 of 32 on one of
two workers in most runs measured. That worker's questions then wait behind each other on its one
interpreter lock while the other worker idles: fewer answers a second and a long tail.

Here every worker gets its own socket, all of them bound to the same address with ``SO_REUSEPORT``;
the kernel hashes each new connection to one of the listening sockets, so a pool spreads over the
workers like any independent draws (16 ± 3 of 32 on two). Each socket stays open in the supervisor:
when a worker dies, connections hashed to its socket wait in its backlog for the replacement, which
listens on that same socket (as they wait in the shared socket's backlog with uvicorn's supervisor).

The supervisor restarts a worker that dies or stops answering its health check (uvicorn's ``Process``
and its ping), stops on SIGINT / SIGTERM, and on SIGHUP replaces the workers one at a time, each new
one serving before the old one leaves. Where the platform has no ``SO_REUSEPORT``,
:func:`reuse_port_available` is false and ``qa serve`` uses uvicorn's own supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Process

from qa.errors import ListenError

log = logging.getLogger(__name__)

_STOP = {signal.SIGINT, signal.SIGTERM}


def reuse_port_available() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``host:port`` in one ``SO_REUSEPORT`` group (port 0: one free port for
    all), inheritable by the workers; listening starts in each worker.

    A port another program listens on is refused, even one that itself set ``SO_REUSEPORT`` (an earlier
    ``qa serve`` still running would otherwise silently take a share of the connections): a socket
    without the option is bound first, as a probe."""
    family = _family(host)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        port = int(probe.getsockname()[1])
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sockets


class Workers:
    """The supervisor: slot ``i`` always runs a worker on ``sockets[i]``."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.slots: list[Process] = []
        self.should_exit = threading.Event()
        self.failed = False
        self._signals: list[int] = []

    def _spawn(self, slot: int) -> Process:
        process = Process(self.config, [self.sockets[slot]])
        process.start()
        return process

    def queue_signal(self, sig: int, _frame: FrameType | None) -> None:
        self._signals.append(sig)  # handled by the supervising loop, not inside the handler
        if sig in _STOP:
            self.should_exit.set()

    def run(self) -> None:
        """Until SIGINT or SIGTERM: start the workers, then check on them twice a second."""
        for sig in (*_STOP, signal.SIGHUP):
            signal.signal(sig, self.queue_signal)
        self.start()
        try:
            while not self.should_exit.wait(0.5):
                self.check()
        finally:
            self.stop()

    def start(self) -> None:
        log.info(
            "supervisor %d: %d workers, each on its own socket of one port", os.getpid(), len(self.sockets)
        )
        self.slots = [self._spawn(i) for i in range(len(self.sockets))]

    def check(self) -> None:
        """Act on the signals received since the last check, then replace the workers that died."""
        self._handle_signals()
        self._replace_dead()

    def stop(self) -> None:
        for process in self.slots:
            process.terminate()
        for process in self.slots:
            process.join()
        for sock in self.sockets:
            sock.close()
        log.info("supervisor %d: stopped", os.getpid())

    def _handle_signals(self) -> None:
        while self._signals:
            if self._signals.pop(0) == signal.SIGHUP:
                log.info("SIGHUP: replacing the workers one at a time")
                self.restart()

    def _replace_dead(self) -> None:
        for slot, process in enumerate(self.slots):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # dead, or alive but not answering its health check
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # the app or its settings: a new one would fail alike
                log.error("worker %s failed to start; stopping", process.pid)
                self.failed = True
                self.should_exit.set()
                return
            log.warning(
                "worker %s stopped (exit code %s); starting another on its socket",
                process.pid,
                process.exitcode,
            )
            self.slots[slot] = self._spawn(slot)

    def restart(self) -> None:
        """Each worker in turn: a new one on its socket, serving before the old one is stopped; a new one
        not ready in time is killed and the rest keep running."""
        for slot, old in enumerate(self.slots):
            if self.should_exit.is_set():
                return
            new = self._spawn(slot)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                log.error("a new worker was not ready in time: keeping worker %s, restart stopped", old.pid)
                return
            old.terminate()
            old.join()
            self.slots[slot] = new


def serve(app: str, *, workers: int, host: str, port: int, **options: object) -> None:
    """Run ``app`` (an import string of an app factory) in ``workers`` processes on ``host:port``."""
    config = uvicorn.Config(app, factory=True, workers=workers, host=host, port=port, **options)  # type: ignore[arg-type]
    sockets = listening_sockets(host, port, workers)
    bound = sockets[0].getsockname()
    log.info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
        host if ":" not in host else f"[{host}]",
        bound[1],
    )
    supervisor = Workers(config, sockets)
    supervisor.run()
    if supervisor.failed:
        raise SystemExit(STARTUP_FAILURE)
