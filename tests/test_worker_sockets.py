"""``qa serve --workers N``: one listening socket per worker, and the supervisor that keeps them."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from qa.api import workers
from qa.errors import ListenError
from tests.test_load import ServeProcess, socket_inodes, write_config

pytestmark = pytest.mark.skipif(not workers.reuse_port_available(), reason="no SO_REUSEPORT here")


@contextlib.contextmanager
def closing_all(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_every_worker_gets_a_socket_of_one_port() -> None:
    with closing_all(workers.listening_sockets("127.0.0.1", 0, 3)) as sockets:
        ports = {sock.getsockname() for sock in sockets}
        assert len(ports) == 1 and next(iter(ports))[1] != 0  # port 0: one free port for all
        assert len({sock.fileno() for sock in sockets}) == 3
        for sock in sockets:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.get_inheritable()
        for sock in sockets:  # all of them can listen at once
            sock.listen()
        with socket.create_connection(sockets[0].getsockname(), timeout=5):
            pass


@pytest.mark.parametrize("reuse_port", [False, True])
def test_a_port_another_program_listens_on_is_refused(reuse_port: bool) -> None:
    """Even one whose socket set SO_REUSEPORT too (an earlier `qa serve` left running), which the
    kernel would otherwise let us join, taking a share of its connections."""
    with socket.socket() as other:
        if reuse_port:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ListenError, match=re.escape(f"cannot listen on 127.0.0.1:{port}")):
            workers.listening_sockets("127.0.0.1", port, 2)


def test_an_address_not_of_this_machine_is_refused() -> None:
    with pytest.raises(ListenError, match=re.escape("cannot listen on 192.0.2.1")):
        workers.listening_sockets("192.0.2.1", 0, 2)  # TEST-NET-1: never a local address


# -- the supervisor, with processes that only record what is done to them -------------------------------


class FakeProcess:
    pids = count(1000)

    def __init__(self, config: Any, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        self.pid = next(self.pids)
        self.events: list[str] = []
        self.alive = False
        self.ready = True  # what wait_until_ready will say
        self.exitcode: int | None = None

    def start(self) -> None:
        self.alive = True
        self.events.append("start")

    def is_alive(self, timeout: float = 5) -> bool:
        return self.alive

    def wait_until_ready(self, timeout: float, should_exit: Any = None) -> bool:
        return self.ready

    def kill(self) -> None:
        self.alive = False
        self.events.append("kill")

    def terminate(self) -> None:
        self.alive = False
        self.events.append("terminate")

    def join(self) -> None:
        self.events.append("join")


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> Iterator[workers.Workers]:
    monkeypatch.setattr(workers, "Process", FakeProcess)
    config = uvicorn.Config("qa.api.app:app_from_config", factory=True, workers=2)
    with closing_all(workers.listening_sockets("127.0.0.1", 0, 2)) as sockets:
        yield workers.Workers(config, sockets)


def slots(supervisor: workers.Workers) -> list[FakeProcess]:
    return supervisor.slots  # type: ignore[return-value]


def test_slot_i_runs_its_worker_on_socket_i(supervisor: workers.Workers) -> None:
    supervisor.start()
    assert [p.sockets for p in slots(supervisor)] == [[s] for s in supervisor.sockets]
    assert all(p.events == ["start"] for p in slots(supervisor))


def test_a_dead_worker_is_replaced_on_its_own_socket(supervisor: workers.Workers) -> None:
    supervisor.start()
    first, second = slots(supervisor)
    second.alive, second.exitcode = False, -9  # killed by the kernel, say
    supervisor.check()
    assert slots(supervisor)[0] is first and first.events == ["start"]
    replacement = slots(supervisor)[1]
    assert replacement is not second and replacement.sockets == [supervisor.sockets[1]]
    assert second.events == ["start", "kill", "join"] and not supervisor.should_exit.is_set()


def test_a_worker_that_cannot_start_stops_the_supervisor(supervisor: workers.Workers) -> None:
    """A broken app or config would fail in every new worker alike: no restart loop."""
    supervisor.start()
    slots(supervisor)[0].alive, slots(supervisor)[0].exitcode = False, uvicorn.config.STARTUP_FAILURE
    supervisor.check()
    assert supervisor.should_exit.is_set() and supervisor.failed
    supervisor.stop()
    assert all(p.events[-2:] == ["terminate", "join"] for p in slots(supervisor))
    assert all(s.fileno() == -1 for s in supervisor.sockets)  # closed


def test_sighup_replaces_each_worker_once_the_new_one_serves(supervisor: workers.Workers) -> None:
    supervisor.start()
    old = list(slots(supervisor))
    supervisor.queue_signal(signal.SIGHUP, None)
    supervisor.check()
    new = slots(supervisor)
    assert all(n is not o for n, o in zip(new, old, strict=True))
    assert [n.sockets for n in new] == [[s] for s in supervisor.sockets]
    assert all(o.events == ["start", "terminate", "join"] for o in old)


def test_a_restart_stops_at_a_new_worker_that_never_serves(
    supervisor: workers.Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    supervisor.start()
    old = list(slots(supervisor))

    class NeverReady(FakeProcess):
        def __init__(self, config: Any, sockets: list[socket.socket]) -> None:
            super().__init__(config, sockets)
            self.ready = False

    monkeypatch.setattr(workers, "Process", NeverReady)
    supervisor.restart()
    assert slots(supervisor) == old and all(o.events == ["start"] for o in old)  # still serving


def test_sigterm_ends_the_loop(supervisor: workers.Workers) -> None:
    supervisor.queue_signal(signal.SIGTERM, None)
    assert supervisor.should_exit.is_set()


# -- a real `qa serve --workers 2` ------------------------------------------------------------------------


def tcp_sockets(port: int) -> dict[str, str]:
    """inode → state ("0A" listening, "01" established) of the IPv4 TCP sockets on local ``port``."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            found[fields[9]] = fields[3]
    return found


def children(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids]


@pytest.mark.server
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")
def test_each_worker_listens_on_its_own_socket_and_a_pool_reaches_both(tmp_path: Path) -> None:
    from tests.test_workers import every_worker_ready, free_port

    port = free_port()
    server = ServeProcess(write_config(tmp_path), ("--port", str(port), "--workers", "2"))
    server.start()
    try:
        every_worker_ready(server.base)
        kids = [k for k in children(server.pid) if any(tcp_sockets(port).get(i) for i in socket_inodes(k))]
        assert len(kids) == 2, kids
        listening = {k: {i for i in socket_inodes(k) if tcp_sockets(port).get(i) == "0A"} for k in kids}
        assert all(len(held) == 1 for held in listening.values()), listening
        assert len(set.union(*listening.values())) == 2  # two sockets, one each
        # 32 connections opened at once, as a client pool does: both workers get some
        pool = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
        try:
            for conn in pool:  # a request on each, so that every connection has been accepted
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            for conn in pool:
                assert conn.recv(12).startswith(b"HTTP/1.1 200")
            states = tcp_sockets(port)
            accepted = {k: sum(states.get(i) == "01" for i in socket_inodes(k)) for k in kids}
            assert sum(accepted.values()) == 32 and min(accepted.values()) >= 4, accepted
        finally:
            for conn in pool:
                conn.close()
    finally:
        server.stop()
