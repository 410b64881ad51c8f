"""Load: many concurrent clients against a real ``qa serve`` process on 127.0.0.1.

A fixed number of asyncio workers (one ``httpx.AsyncClient`` with a connection per worker) run for a
fixed time, each request bounded by a timeout. They mix ``POST /v1/ask``, ``POST /v1/chat/completions``
(plain and streamed), ``GET /v1/documents``, and ``POST``/``DELETE /v1/documents`` of articles made
for the run. Afterwards:

- no request failed: every status is the expected one (no 4xx, no 5xx), no timeout, no connection error;
- no request *started* after a ``DELETE`` returned cites the deleted article (the questions ask about
  recently deleted articles on purpose);
- the server's resident memory (``VmRSS`` from ``/proc/<pid>/status``, sampled every second) levels
  off: its median over the last third of the run is within 15% of the median over the middle third;
- the server process listens on 127.0.0.1 only (the default of ``server.host``).

The numbers (requests, rates, latencies, memory) are logged at INFO (``-o log_cli=true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CONFIG, SEEDS

log = logging.getLogger(__name__)

HCMC = "000_a2194725df4ab5f6"
SEED_QUESTIONS = [
    "胡志明市与中国多少个城市建立了友好合作关系？",
    "2024年前11月越中双边贸易金额是多少？",
    "广西壮族自治区党委书记是谁?",
    "越南与中国的贸易额是多少？",
    "日本与越南的贸易额是多少？",
    "How many Chinese cities does Ho Chi Minh City cooperate with?",
]
MAX_LIVE_DOCS = 12  # articles the run keeps at most; past that, an add becomes a delete
REQUEST_TIMEOUT = 30.0  # seconds, per request (connect, read, write, pool)
HARD_TIMEOUT = 45.0  # seconds, per request including a streamed body


# -- a real `qa serve` process ---------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: same escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_config(root: Path) -> Path:
    """The repository's config.toml with a copy of the seeds, the fake encoder and no cosine floor."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for path in SEEDS.glob("*.txt"):
        (corpus / path.name).write_bytes(path.read_bytes())
    data = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    data["corpus"]["dir"] = "corpus"
    data["index"].update(dir="index", show_progress=False)
    data["model"].update(name="fake:64", cache_dir="models")
    data["retrieval"].update(min_dense_score=-1.0, ranker="hand", abstention="rules")  # as in conftest
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    config = root / "config.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open, from /proc."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(target[len("socket:[") : -1])
    return found


class ServeProcess:
    """``qa --config <config> serve --port 0`` in a subprocess; the port is read from uvicorn's log."""

    def __init__(self, config: Path, serve_args: tuple[str, ...] = ("--port", "0")) -> None:
        self.config = config
        self.serve_args = serve_args
        self.log_lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.base = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        command = [sys.executable, "-c", "from qa.cli import main; main()", "--config", str(self.config)]
        self.proc = subprocess.Popen(
            [*command, "serve", *self.serve_args],
            cwd=self.config.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        found = threading.Event()

        def read_log() -> None:  # also keeps the pipe drained for the whole run
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log_lines.append(line.rstrip())
                match = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", line)
                if match:
                    self.base = match.group(1)
                    found.set()

        threading.Thread(target=read_log, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("qa serve did not start:\n" + "\n".join(self.log_lines[-30:]))
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise AssertionError("qa serve did not become ready:\n" + "\n".join(self.log_lines[-30:]))

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match, status
        return int(match.group(1))

    def listening(self) -> set[tuple[str, int]]:
        """(address, port) of the process's listening IPv4/IPv6 TCP sockets, from /proc."""
        inodes = socket_inodes(self.pid)
        found = set()
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN, one of our sockets
                    address, port = fields[1].split(":")
                    raw = bytes.fromhex(address)
                    if table == "tcp":
                        host = ".".join(str(b) for b in raw[::-1])
                    else:
                        host = ":".join(raw[i : i + 4][::-1].hex() for i in range(0, 16, 4))
                    found.add((host, int(port, 16)))
        return found

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(write_config(tmp_path))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the load driver -------------------------------------------------------------------------------


@dataclass
class Citing:
    started: float
    doc_ids: set[str]
    what: str


@dataclass
class Run:
    """Everything the workers saw."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    citations: list[Citing] = field(default_factory=list)
    deleted_at: dict[str, float] = field(default_factory=dict)  # doc_id → when its DELETE returned
    live_docs: list[str] = field(default_factory=list)  # added by the run and not deleted yet
    recently_deleted: list[str] = field(default_factory=list)
    added: int = 0
    rss_kib: list[int] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    def stale_citations(self) -> list[str]:
        return [
            f"{c.what} started {c.started - self.deleted_at[d]:.3f}s after DELETE {d} returned, cites it"
            for c in self.citations
            for d in c.doc_ids
            if d in self.deleted_at and c.started > self.deleted_at[d]
        ]


def article(doc_id: str, code: str) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "text": (
            f"{code}项目在芽庄市正式启动\n\n"
            f"3月5日,{code}项目在芽庄市正式启动,总投资额为3亿美元。"
            f"{code}项目由芽庄市与昆明市共同建设,预计2027年完工。\n"
        ),
    }


def question_about(code: str) -> str:
    return f"{code}项目的总投资额是多少？"


def code_of(doc_id: str) -> str:
    return doc_id.replace("-", "").upper()


class Worker:
    def __init__(self, number: int, client: httpx.AsyncClient, run: Run, seed: int) -> None:
        self.number = number
        self.client = client
        self.run = run
        self.random = random.Random(seed * 1000 + number)
        self.made = 0

    def question(self) -> str:
        pick = self.random.random()
        if pick < 0.35 and self.run.recently_deleted:  # the riskiest question: a just-deleted article
            return question_about(code_of(self.random.choice(self.run.recently_deleted[-8:])))
        if pick < 0.6 and self.run.live_docs:
            return question_about(code_of(self.random.choice(self.run.live_docs)))
        return self.random.choice(SEED_QUESTIONS)

    async def call(self, name: str, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        """One request, bounded; records status, latency and errors. Returns the response or None."""
        started = time.monotonic()
        try:
            response = await asyncio.wait_for(self._send(method, path, **kwargs), HARD_TIMEOUT)
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            self.run.errors.append(f"{name}: {type(exc).__name__} {exc}")
            return None
        self.run.latencies.setdefault(name, []).append(time.monotonic() - started)
        self.run.statuses[(name, response.status_code)] += 1
        if response.status_code != expect:
            self.run.errors.append(f"{name}: {response.status_code} {response.text[:300]}")
            return None
        return response

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, path, **kwargs)
        await response.aread()
        return response

    async def ask(self) -> None:
        question = self.question()
        started = time.monotonic()
        response = await self.call("ask", "POST", "/v1/ask", 200, json={"question": question})
        if response is not None:
            cited = {p["doc_id"] for p in response.json()["passages"]}
            self.run.citations.append(Citing(started, cited, f"ask {question!r}"))

    async def chat(self, stream: bool) -> None:
        question = self.question()
        payload = {
            "model": "zh-news-qa",
            "stream": stream,
            "messages": [{"role": "user", "content": question}],
        }
        name = "chat-stream" if stream else "chat"
        started = time.monotonic()
        response = await self.call(name, "POST", "/v1/chat/completions", 200, json=payload)
        if response is None:
            return
        if stream:
            events = [ln[5:].strip() for ln in response.text.splitlines() if ln.startswith("data:")]
            if not events or events[-1] != "[DONE]":
                self.run.errors.append(f"{name}: the stream did not end with [DONE]: {events[-3:]}")
                return
            last = json.loads(events[-2])
            citations = last.get("citations")
            if citations is None:
                self.run.errors.append(f"{name}: no citations event before [DONE]")
                return
        else:
            citations = response.json()["citations"]
        cited = {p["doc_id"] for p in citations}
        self.run.citations.append(Citing(started, cited, f"{name} {question!r}"))

    async def add(self) -> None:
        self.made += 1
        doc_id = f"ld-{self.number:02d}-{self.made:04d}"
        response = await self.call("add", "POST", "/v1/documents", 201, json=article(doc_id, code_of(doc_id)))
        if response is not None:
            self.run.added += 1
            self.run.live_docs.append(doc_id)

    async def delete(self) -> None:
        doc_id = self.run.live_docs.pop(self.random.randrange(len(self.run.live_docs)))
        response = await self.call("delete", "DELETE", f"/v1/documents/{doc_id}", 204)
        if response is not None:
            self.run.deleted_at[doc_id] = time.monotonic()
            self.run.recently_deleted.append(doc_id)

    async def step(self) -> None:
        pick = self.random.random()
        if pick < 0.35:
            await self.ask()
        elif pick < 0.55:
            await self.chat(stream=False)
        elif pick < 0.72:
            await self.chat(stream=True)
        elif pick < 0.78:
            await self.call("list", "GET", "/v1/documents", 200, params={"limit": 20})
        elif pick < 0.89:
            if len(self.run.live_docs) >= MAX_LIVE_DOCS:
                await self.delete()
            else:
                await self.add()
        elif self.run.live_docs:
            await self.delete()
        else:
            await self.call("get", "GET", f"/v1/documents/{HCMC}", 200)

    async def loop(self, until: float) -> None:
        while time.monotonic() < until:
            await self.step()


async def sample_memory(server: ServeProcess, run: Run, until: float) -> None:
    while time.monotonic() < until:
        run.rss_kib.append(server.rss_kib())
        await asyncio.sleep(1.0)


async def drive(server: ServeProcess, clients: int, seconds: float, seed: int = 6) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(REQUEST_TIMEOUT)
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=timeout) as client:
        workers = [Worker(n, client, run, seed) for n in range(clients)]
        for worker in workers[: min(clients, MAX_LIVE_DOCS // 2)]:  # articles to delete from the start
            await worker.add()
        until = time.monotonic() + seconds
        await asyncio.gather(sample_memory(server, run, until), *(w.loop(until) for w in workers))
    return run


def summary(run: Run, seconds: float) -> str:
    per = Counter[str]()
    for (name, _), n in run.statuses.items():
        per[name] += n
    lat = {
        name: f"p50 {statistics.median(v) * 1000:.0f} ms, p99 {sorted(v)[int(len(v) * 0.99)] * 1000:.0f} ms"
        for name, v in sorted(run.latencies.items())
    }
    rss = [kib // 1024 for kib in run.rss_kib]
    return (
        f"{run.requests} requests in {seconds:.0f} s ({run.requests / seconds:.0f}/s): {dict(per)}; "
        f"{run.added} added, {len(run.deleted_at)} deleted; {len(run.citations)} answers checked; "
        f"latency {lat}; RSS MiB first/min/max/last {rss[:1]}/{min(rss)}/{max(rss)}/{rss[-1:]} "
        f"({len(rss)} samples); errors {len(run.errors)}"
    )


def check(run: Run, server: ServeProcess, clients: int, seconds: float) -> None:
    text = summary(run, seconds)
    log.info("load, %d clients: %s", clients, text)
    assert not run.errors, f"{len(run.errors)} failed requests, e.g. {run.errors[:10]}\n{text}"
    assert not [k for k in run.statuses if k[1] >= 500]
    stale = run.stale_citations()
    assert not stale, stale[:10]
    kinds = {name for name, _ in run.statuses}
    assert {"ask", "chat", "chat-stream", "add", "delete"} <= kinds, text
    assert run.requests >= clients * 2, text
    # the deleted-article check had something to check: deleted articles were asked about afterwards
    asked_after = sum(
        1
        for c in run.citations
        for d in run.recently_deleted
        if code_of(d) in c.what and c.started > run.deleted_at[d]
    )
    assert asked_after > 0, text
    # and the live ones were actually cited (so a stale citation would have shown)
    assert any(d.startswith("ld-") for c in run.citations for d in c.doc_ids), text
    assert server.proc is not None and server.proc.poll() is None, "the server died"


def check_memory_levels_off(run: Run) -> None:
    samples = run.rss_kib
    third = len(samples) // 3
    middle = statistics.median(samples[third : 2 * third])
    last = statistics.median(samples[2 * third :])
    assert last <= middle * 1.15, f"RSS grew from {middle / 1024:.0f} MiB to {last / 1024:.0f} MiB: {samples}"


def check_loopback_only(server: ServeProcess) -> None:
    listening = server.listening()
    assert listening, "no listening socket found"
    assert {host for host, _ in listening} == {"127.0.0.1"}, listening


@pytest.mark.server
def test_load_quick(serve: ServeProcess) -> None:
    clients, seconds = 16, 5.0
    check_loopback_only(serve)
    run = asyncio.run(drive(serve, clients, seconds))
    check(run, serve, clients, seconds)
    assert httpx.get(f"{serve.base}/readyz", timeout=10).status_code == 200


@pytest.mark.slow
@pytest.mark.server
def test_load_64_clients_30_seconds(serve: ServeProcess) -> None:
    clients, seconds = 64, 30.0
    check_loopback_only(serve)
    run = asyncio.run(drive(serve, clients, seconds))
    check(run, serve, clients, seconds)
    assert len(run.rss_kib) >= 25
    check_memory_levels_off(run)
    # nothing the run added survives its deletes in the corpus folder, and the server still answers
    corpus = serve.config.parent / "corpus"
    on_disk = {p.stem for p in corpus.glob("ld-*")}
    assert on_disk == set(run.live_docs), (on_disk, run.live_docs)
    assert httpx.get(f"{serve.base}/readyz", timeout=10).status_code == 200
