"""A fork server for the crash and concurrency tests: indexer processes that can be killed mid-write.

``python -m tests.crash_worker`` imports the engine once, then forks one child per operation it is sent
(a build, an add or delete of a document, or a script of several), so a test can run dozens of indexer
processes and SIGKILL them at random points without paying the start-up (imports, jieba's dictionary)
each time. The children use the fake encoder, slowed down on request (a sleep per embedding batch and
at every checkpoint), and log each checkpoint they pass to a file:

    before:new_segment_dir  after:write_segment_tables  before:replace:CURRENT  after:remove_from_corpus  ...

A child kills itself with SIGKILL at the N-th checkpoint (``kill_at``) or at a named one
(``kill_on="before:replace:corpus#1"``): deterministic kill points; the test can also kill it after a
delay. The protocol is one JSON object per line on stdin and stdout; ``Zygote`` is the test's side.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# -- the test's side -------------------------------------------------------------------------------------


class Zygote:
    """Starts the fork server and talks to it; every wait is bounded."""

    def __init__(self, stderr_path: Path, timeout: float = 60.0) -> None:
        self.stderr_path = stderr_path
        self.timeout = timeout
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._buffer = b""
        reply = self._read(self.timeout)
        assert reply.get("ready"), reply

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the fork server did not answer in {timeout} s; {self.stderr()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"the fork server exited; {self.stderr()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"fork server: {reply['error']}; {self.stderr()}")
        return reply

    def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()
        return self._read(self.timeout if timeout is None else timeout)

    def prepare(self, root: Path) -> None:
        """Settings of ``tests.conftest.settings_in(root)`` for the operations that follow."""
        self.request({"cmd": "prepare", "root": str(root)})

    def start(self, op: dict[str, Any]) -> int:
        """Fork a child running ``op``; returns its pid."""
        return int(self.request({"cmd": "run", "op": op})["pid"])

    def wait(self, pid: int, timeout: float | None = None) -> dict[str, Any]:
        """``{"exit": code}`` or ``{"signal": number}``; a child still running at the timeout is killed
        and reported as ``{"timeout": true}``."""
        limit = self.timeout if timeout is None else timeout
        return self.request({"cmd": "wait", "pid": pid, "timeout": limit}, timeout=limit + 30)

    def kill(self, pid: int) -> None:
        """SIGKILL one child of the server (a no-op once it has exited: it stays a zombie until waited)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def stderr(self) -> str:
        try:
            tail = self.stderr_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        except OSError:
            tail = ""
        return f"server stderr: {tail}"

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._stderr.close()


def read_log(path: Path) -> list[str]:
    """The checkpoints (and results) a child logged, in order."""
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    except FileNotFoundError:
        return []


# -- the server and its children -------------------------------------------------------------------------


def _instrument(op: dict[str, Any], log: Any, corpus_dir: Path) -> Callable[[str], None]:
    """Checkpoints around every step that writes, removes or publishes something."""
    import shutil

    from qa import indexing
    from qa.index import builder, layout

    kill_at = op.get("kill_at")
    kill_on = op.get("kill_on")
    step_sleep = float(op.get("step_sleep", 0.0))
    count = 0
    seen: dict[str, int] = {}

    def checkpoint(name: str) -> None:
        nonlocal count
        count += 1
        seen[name] = seen.get(name, 0) + 1
        log.write(f"{count} {name}\n")
        log.flush()
        if count == kill_at or f"{name}#{seen[name]}" == kill_on:
            os.kill(os.getpid(), signal.SIGKILL)
        if step_sleep:
            time.sleep(step_sleep)

    def wrap(owner: Any, attr: str, label: Any) -> None:
        original = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name = label(*args) if callable(label) else label
            checkpoint(f"before:{name}")
            result = original(*args, **kwargs)
            checkpoint(f"after:{name}")
            return result

        setattr(owner, attr, wrapper)

    corpus = str(corpus_dir.resolve())

    def replace_label(_src: Any, dst: Any, *_: Any) -> str:
        path = Path(dst).resolve()
        if str(path).startswith(corpus + os.sep):
            return "replace:corpus"
        if "embedding-cache" in path.parts:
            return "replace:cache"
        return f"replace:{path.name}"

    wrap(os, "replace", replace_label)
    wrap(shutil, "rmtree", "rmtree")
    for attr in ("new_segment_dir", "seal_segment", "new_version_dir", "seal_version", "publish"):
        wrap(layout, attr, attr)
    wrap(builder, "write_segment_tables", "write_segment_tables")
    for attr in ("write_document", "remove_from_corpus"):
        wrap(indexing, attr, attr)
    builder.ENCODE_BATCH = int(op.get("batch", builder.ENCODE_BATCH))
    return checkpoint


def _run_child(op: dict[str, Any], engine: Any) -> int:
    from qa.documents import NewDocument
    from qa.embeddings.encoder import FakeEncoder
    from qa.errors import DocumentNotFoundError

    with open(op["log"], "a", encoding="utf-8") as log:
        checkpoint = _instrument(op, log, engine.settings.corpus_dir)
        encode_sleep = float(op.get("encode_sleep", 0.0))

        class SlowFakeEncoder(FakeEncoder):
            """The fake encoder (same name, same vectors), with a pause per batch."""

            def encode_passages(self, texts: Any, *, show_progress: bool = False) -> Any:
                checkpoint("encode")
                if encode_sleep:
                    time.sleep(encode_sleep)
                return super().encode_passages(texts)

        engine._encoder = SlowFakeEncoder(64)
        kind = op["kind"]
        try:
            if kind in {"build", "rebuild"}:
                engine.build(rebuild=kind == "rebuild", show_progress=False)
            elif kind == "add":
                engine.open(show_progress=False)
                engine.add_document(NewDocument(**op["doc"]))
            elif kind == "delete":
                engine.open(show_progress=False)
                engine.delete_document(op["doc_id"])
            elif kind == "compact":
                engine.open(show_progress=False)
                engine.compact()
            elif kind == "script":  # several writes in one process, each result logged
                engine.open(show_progress=False)
                for action in op["actions"]:
                    result: dict[str, Any] = {"action": action["kind"]}
                    try:
                        if action["kind"] == "add":
                            result["doc_id"] = engine.add_document(NewDocument(**action["doc"])).doc_id
                        elif action["kind"] == "delete":
                            result["doc_id"] = action["doc_id"]
                            engine.delete_document(action["doc_id"])
                        else:
                            engine.build(show_progress=False)
                        result["ok"] = True
                    except DocumentNotFoundError:
                        result["ok"] = False
                    log.write("result " + json.dumps(result) + "\n")
                    log.flush()
            else:
                raise ValueError(f"unknown operation {kind!r}")
            engine.indexing.wait_for_merges()  # a merge the write started is part of the operation
        except Exception as exc:
            log.write(f"error {type(exc).__name__}: {exc}\n")
            log.flush()
            return 3
        log.write("done\n")
        log.flush()
    return 0


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"pid": pid, "timeout": True}
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        return {"pid": pid, "signal": os.WTERMSIG(status)}
    return {"pid": pid, "exit": os.WEXITSTATUS(status)}


def serve() -> None:
    sys.path.insert(0, str(ROOT))
    from qa.engine import Engine
    from tests.conftest import settings_in

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    engine: Any = None
    reply({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        try:
            if message["cmd"] == "prepare":
                engine = Engine(settings_in(Path(message["root"])))
                engine.tokenizer.tokens("预热分词器")  # load jieba's dictionary once, before forking
                reply({"ok": True})
            elif message["cmd"] == "run":
                pid = os.fork()
                if pid == 0:  # the child: never returns into this loop
                    code = 1
                    try:
                        code = _run_child(message["op"], engine)
                    except BaseException:
                        traceback.print_exc()
                    finally:
                        sys.stderr.flush()
                        os._exit(code)
                reply({"pid": pid})
            elif message["cmd"] == "wait":
                reply(_wait(int(message["pid"]), float(message["timeout"])))
            else:
                reply({"error": f"unknown command {message['cmd']!r}"})
        except Exception as exc:  # report, keep serving
            reply({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    serve()
