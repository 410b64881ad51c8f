"""Indexer processes killed with SIGKILL mid-build or mid-update never leave a broken index.

Each operation runs in a child of a fork server (``tests/crash_worker.py``) with the fake encoder slowed
down, and is killed either at a chosen checkpoint or after a random delay (seeded, so a failing round can
be replayed). After every kill the index loads — the version before the operation or the one after it,
never anything else — and answers with citations that match the stored text; re-running the build then
makes the index match the corpus folder exactly and removes every leftover of the killed process.
"""

from __future__ import annotations

import json
import random
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa.config import Settings
from qa.documents import NewDocument, prepare_document, write_document
from qa.engine import Engine
from qa.errors import IndexStoreError
from qa.index import layout, sources
from qa.index.builder import article_hash
from qa.index.embed_cache import CACHE_DIR
from qa.ingest.loader import load_corpus, load_file
from qa.records import Article
from tests.conftest import SEEDS, settings_in
from tests.crash_worker import Zygote, read_log

PROTECTED = "004_9796523c0b21f5fd"  # never changed or deleted: the question below always has an answer
QUESTION = "胡志明市副主席杨英德和上海哪位副市长开了视频会议?"
SLOW_DOWN = {"batch": 8, "encode_sleep": 0.02, "step_sleep": 0.005}
# Rough length of each operation in checkpoints and seconds (measured), to spread the kills over it.
STEPS = {"build": 28, "rebuild": 17, "add": 24, "delete": 19}
SECONDS = {"build": 0.6, "rebuild": 0.4, "add": 0.45, "delete": 0.35}
WAIT = 60.0  # seconds: the longest any child may take


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    server = Zygote(tmp_path_factory.mktemp("zygote") / "stderr.txt", timeout=WAIT)
    yield server
    server.close()


State = dict[str, str]  # doc_id -> content hash: what an index (or the corpus folder) holds


def index_state(engine: Engine) -> State:
    return dict(engine.index.hashes)


def corpus_state(settings: Settings) -> State:
    report = load_corpus(settings.corpus_dir, settings.corpus.patterns, settings.corpus.max_file_bytes)
    return {a.doc_id: article_hash(a) for a in report.articles}


def stored_article(doc: NewDocument) -> Article:
    """The article ``add_document`` indexes for ``doc`` (stored and read back, as the engine does)."""
    with tempfile.TemporaryDirectory() as scratch:
        staged = prepare_document(Path(scratch), doc, max_bytes=1 << 20)
        write_document(Path(scratch), staged, None)
        return next(a for a in load_file(staged.path, 1 << 20) if isinstance(a, Article))


def sentence_pool() -> list[str]:
    """Sentences of the seeds other than the protected one: material for new and changed articles."""
    pool = []
    for path in sorted(SEEDS.glob("*.txt")):
        if path.stem != PROTECTED:
            for sentence in re.split(r"(?<=[。!?])", path.read_text(encoding="utf-8")):
                sentence = sentence.strip()
                if 20 <= len(sentence) <= 120 and "\n" not in sentence:
                    pool.append(sentence)
    return pool


def check_answers(engine: Engine, settings: Settings) -> None:
    """A question is answered, and every citation is the stored text of an article of that index."""
    index = engine.index
    answer = engine.ask(QUESTION)
    assert answer.answerable and answer.hits, answer.reason
    with open(settings.corpus_dir / f"{PROTECTED}.txt", encoding="utf-8") as handle:
        protected_source = handle.read()
    for hit in answer.hits:
        article = index.articles[hit.chunk.doc_id]
        assert article.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text
        assert hit.title == article.title
        if hit.chunk.doc_id == PROTECTED:
            assert protected_source[hit.chunk.start : hit.chunk.end] == hit.chunk.text


def assert_clean(settings: Settings, engine: Engine) -> None:
    """After a finished build: one version, only the segments it names, no temporary file anywhere, the
    cache covers the index."""
    index_dir, live = settings.index_dir, layout.current_version(settings.index_dir)
    assert live is not None and engine.index.version == live
    versions = sorted(p.name for p in index_dir.glob("v-*"))
    assert versions == [live.name], versions
    assert {p.name for p in index_dir.iterdir()} <= {
        layout.CURRENT,
        layout.LOCK,
        CACHE_DIR,
        layout.SEGMENTS,
        sources.SOURCES,  # what the corpus files were at the last build (a cache; may be older)
        live.name,
    }
    named = layout.manifest_segments(layout.read_manifest(live, verify=False))
    assert sorted(p.name for p in (index_dir / layout.SEGMENTS).iterdir()) == sorted(named)
    assert not list(index_dir.rglob("*.tmp")), list(index_dir.rglob("*.tmp"))
    assert not list(settings.corpus_dir.rglob("*.tmp")), list(settings.corpus_dir.rglob("*.tmp"))
    cached = {p.stem for p in (index_dir / CACHE_DIR).rglob("*.npy")}
    assert set(engine.index.hashes.values()) <= cached


def leftovers(index_dir: Path) -> list[str]:
    """The versions and segments on disk that the live version is not made of."""
    live = layout.current_version(index_dir)
    assert live is not None
    named = set(layout.manifest_segments(layout.read_manifest(live, verify=False)))
    return [p.name for p in index_dir.glob("v-*") if p != live] + [
        p.name for p in (index_dir / layout.SEGMENTS).glob("s-*") if p.name not in named
    ]


class CrashRun:
    """One index folder, operated on by killed children and checked by a reader engine in the test."""

    def __init__(self, zygote: Zygote, root: Path, seed: int) -> None:
        self.zygote = zygote
        self.root = root
        self.rng = random.Random(seed)
        self.settings = settings_in(root)
        zygote.prepare(root)
        self.reader = Engine(self.settings)
        self.pool = sentence_pool()
        self.state: State | None = None  # what the index held after the last round (None: no index yet)
        self.questions: dict[str, str] = {}  # doc_id -> a question its own text answers
        self.serial = 0
        self.outcomes: Counter[str] = Counter()
        self.kill_points: Counter[str] = Counter()

    # -- material ----------------------------------------------------------------------------------
    def _text(self) -> str:
        self.serial += 1
        body = self.rng.sample(self.pool, self.rng.randint(2, 5))
        return f"第{self.serial}号新闻 {body[0][:12]}\n\n" + "\n".join(body)

    def _remember(self, doc_id: str, text: str) -> None:
        lines = [line for line in text.split("\n") if len(line) >= 20]
        if lines:
            self.questions[doc_id] = lines[-1][:60]

    def _new_document(self, doc_id: str) -> NewDocument:
        text = self._text()
        self._remember(doc_id, text)
        if self.rng.random() < 0.4:
            return NewDocument(
                doc_id, text.split("\n\n", 1)[1], title=f"标题{self.serial}", date="2025-02-03"
            )
        return NewDocument(doc_id, text)

    def _writable(self, state: State) -> list[str]:
        corpus = corpus_state(self.settings)
        return sorted(d for d in state if d in corpus and d != PROTECTED)

    def mutate_corpus(self) -> None:
        """What a user does to the folder between builds: add, change or delete article files."""
        corpus = self.settings.corpus_dir
        for _ in range(self.rng.randint(1, 2)):
            files = sorted(p for p in corpus.glob("*.txt") if p.stem != PROTECTED)
            choice = self.rng.random()
            if choice < 0.4 or len(files) < 3:
                self.serial += 1
                doc_id = f"file-{self.serial}"
                text = self._text()
                (corpus / f"{doc_id}.txt").write_text(text, encoding="utf-8")
                self._remember(doc_id, text)
            elif choice < 0.7:
                path = self.rng.choice(files)
                text = path.read_text(encoding="utf-8") + "\n" + self.rng.choice(self.pool)
                path.write_text(text, encoding="utf-8")
            else:
                self.rng.choice(files).unlink()

    # -- one round ---------------------------------------------------------------------------------
    def plan(self, number: int) -> tuple[dict[str, Any], list[State]]:
        """The operation of a round and the states its new index version may hold."""
        before = self.state
        choice = self.rng.random()
        writable = self._writable(before) if before is not None else []
        if number == 0 or choice < 0.3 or (before is None and choice < 0.6):
            self.mutate_corpus()
            return {"kind": "build"}, [corpus_state(self.settings)]
        if choice < 0.4 and before is not None:
            return {"kind": "rebuild"}, [corpus_state(self.settings)]
        if choice < 0.75 or before is None or len(writable) < 3:
            if writable and self.rng.random() < 0.4:
                doc_id = self.rng.choice(writable)  # replace an article (maybe .txt by .jsonl)
            else:
                self.serial += 1
                doc_id = f"api-{self.serial}"
            doc = self._new_document(doc_id)
            added = {doc_id: article_hash(stored_article(doc))}
            fields = {"doc_id": doc.doc_id, "text": doc.text, "title": doc.title, "date": doc.date}
            if before is None:  # the child builds the first index, then adds
                corpus = corpus_state(self.settings)
                return {"kind": "add", "doc": fields}, [corpus, {**corpus, **added}]
            return {"kind": "add", "doc": fields}, [{**before, **added}]
        doc_id = self.rng.choice(writable)
        return {"kind": "delete", "doc_id": doc_id}, [{d: h for d, h in before.items() if d != doc_id}]

    def round(self, number: int) -> None:
        op, outcomes = self.plan(number)
        kind = op["kind"]
        log = self.root / f"round-{number:02d}-{kind}.log"
        op = {**op, **SLOW_DOWN, "log": str(log)}
        delay = None
        if self.rng.random() < 0.5:
            op["kill_at"] = self.rng.randint(1, STEPS[kind] + 3)  # past the end: the operation completes
        else:
            delay = self.rng.uniform(0.0, SECONDS[kind] * 1.1)
        pid = self.zygote.start(op)
        if delay is not None:
            time.sleep(delay)
            self.zygote.kill(pid)
        status = self.zygote.wait(pid, WAIT)
        lines = read_log(log)
        assert "timeout" not in status, f"round {number}: {kind} hung; {lines[-3:]}"
        killed = status.get("signal") == signal.SIGKILL
        assert killed or status.get("exit") == 0, (
            f"round {number}: {status} {lines[-3:]} {self.zygote.stderr()}"
        )
        self.outcomes[f"{kind} {'killed' if killed else 'completed'}"] += 1
        if killed:
            self.kill_points[lines[-1].split(" ", 1)[1] if lines else "start"] += 1
        self.check_loadable(number, kind, killed, outcomes)

    def check_loadable(self, number: int, kind: str, killed: bool, outcomes: list[State]) -> None:
        where = f"round {number} ({kind}, {'killed' if killed else 'completed'})"
        try:
            self.reader.open(build_if_missing=False)
        except IndexStoreError as exc:
            # Only acceptable before the very first publish: then there is no CURRENT at all.
            assert self.state is None and killed, f"{where}: {exc}"
            assert layout.read_pointer(self.settings.index_dir) is None, f"{where}: {exc}"
            assert "no index" in str(exc)
            return
        now = index_state(self.reader)
        acceptable = ([self.state] if self.state is not None else []) + outcomes
        assert now in acceptable, f"{where}: the index holds neither the previous nor the new version"
        if not killed:
            assert now == outcomes[-1], f"{where}: the completed operation is not in the index"
        check_answers(self.reader, self.settings)
        self.state = now

    def finish(self) -> None:
        """Re-run the build: the index matches the corpus folder, leftovers are gone, deleted is never cited."""
        self.reader.build(show_progress=False)
        self.reader.indexing.wait_for_merges()
        corpus = corpus_state(self.settings)
        assert index_state(self.reader) == corpus
        assert_clean(self.settings, self.reader)
        check_answers(self.reader, self.settings)
        for doc_id, question in self.questions.items():
            if doc_id not in corpus:
                cited = {h.chunk.doc_id for h in self.reader.ask(question, top_k=50).hits}
                assert doc_id not in cited, f"deleted article {doc_id} is cited"
        self.state = corpus


def crash_rounds(zygote: Zygote, root: Path, rounds: int, seed: int) -> CrashRun:
    run = CrashRun(zygote, root, seed)
    for number in range(rounds):
        run.round(number)
        if number == rounds - 1 or run.rng.random() < 0.5:
            run.finish()
    return run


def test_killed_builds_and_updates_leave_a_loadable_index(zygote: Zygote, tmp_path: Path) -> None:
    run = crash_rounds(zygote, tmp_path, rounds=3, seed=6)
    assert sum(run.outcomes.values()) == 3


@pytest.mark.slow
def test_twenty_killed_builds_and_updates(zygote: Zygote, tmp_path: Path) -> None:
    run = crash_rounds(zygote, tmp_path, rounds=20, seed=2025)
    killed = sum(n for outcome, n in run.outcomes.items() if outcome.endswith("killed"))
    assert killed >= 8, run.outcomes  # most rounds are really interrupted
    assert len(run.kill_points) >= 5, run.kill_points  # at many different points
    assert {o.split()[0] for o in run.outcomes} == {"build", "rebuild", "add", "delete"}, run.outcomes


# -- kills at chosen points: each leaves a known leftover, which the next build removes --------------------


def run_killed(run: CrashRun, op: dict[str, Any], kill_on: str) -> list[str]:
    log = run.root / f"{kill_on.replace(':', '_')}.log"
    pid = run.zygote.start({**op, **SLOW_DOWN, "kill_on": kill_on, "log": str(log)})
    status = run.zygote.wait(pid, WAIT)
    lines = read_log(log)
    assert status.get("signal") == signal.SIGKILL, (kill_on, status, lines[-3:], run.zygote.stderr())
    assert lines[-1].endswith(kill_on.split("#")[0])
    run.reader.open(build_if_missing=False)
    check_answers(run.reader, run.settings)
    return lines


def live_segments(index_dir: Path) -> list[str]:
    live = layout.current_version(index_dir)
    assert live is not None
    return layout.manifest_segments(layout.read_manifest(live, verify=False))


def test_kills_inside_a_merge_lose_nothing(zygote: Zygote, tmp_path: Path) -> None:
    """A merge killed at each of its steps leaves the index it started from, or the merged one: the
    same articles and answers either way."""
    run = CrashRun(zygote, tmp_path, seed=11)
    run.finish()
    steps = [
        ("after:new_segment_dir#1", False),
        ("before:replace:vectors.npy#1", False),
        ("before:replace:segment.json#1", False),
        ("after:new_version_dir#1", False),
        ("before:replace:manifest.json#1", False),
        ("before:replace:CURRENT#1", False),
        ("after:replace:CURRENT#1", True),
    ]
    for number, (kill_on, merged) in enumerate(steps):
        for i in range(2):  # two more segments to merge: two added articles
            run.reader.add_document(NewDocument(doc_id=f"merge-{number}-{i}", text=run._text()))
        if number % 2:
            run.reader.delete_document(f"merge-{number}-0")  # and a dead row, dropped by the merge
        run.reader.indexing.wait_for_merges()  # the reader's own merges (more than 8 segments) done
        before, segments = index_state(run.reader), live_segments(run.settings.index_dir)
        assert len(segments) >= 3
        run_killed(run, {"kind": "compact"}, kill_on)
        assert index_state(run.reader) == before, kill_on
        assert len(live_segments(run.settings.index_dir)) == (1 if merged else len(segments)), kill_on
        assert leftovers(run.settings.index_dir), kill_on
        run.finish()


def test_kills_at_each_write_step_are_recovered(zygote: Zygote, tmp_path: Path) -> None:
    run = CrashRun(zygote, tmp_path, seed=7)
    settings, corpus, index_dir = run.settings, run.settings.corpus_dir, run.settings.index_dir
    run.finish()
    before = index_state(run.reader)
    doc = {"doc_id": "killed-add", "text": run._text()}

    # add_document killed before its corpus file is renamed into place: a temporary file, nothing else
    run_killed(run, {"kind": "add", "doc": doc}, "before:replace:corpus#1")
    assert list(corpus.glob(".killed-add.txt.*.tmp")) and not (corpus / "killed-add.txt").exists()
    assert index_state(run.reader) == before
    run.finish()
    assert "killed-add" not in run.reader.index.articles

    # killed after the corpus write: the corpus has it, the index not yet; the next build adds it
    run_killed(run, {"kind": "add", "doc": doc}, "after:replace:corpus#1")
    assert (corpus / "killed-add.txt").is_file() and index_state(run.reader) == before
    run.finish()
    assert "killed-add" in run.reader.index.articles
    before = index_state(run.reader)

    # killed while caching embeddings: a temporary file in the cache
    fresh = {"doc_id": "killed-cache", "text": run._text()}  # new text: not in the cache yet
    run_killed(run, {"kind": "add", "doc": fresh}, "before:replace:cache#1")
    assert list((index_dir / CACHE_DIR).rglob("*.tmp"))
    run.finish()

    # builds killed at each step of writing a segment and publishing a version
    steps = [
        ("after:new_segment_dir#1", False),  # an empty segment folder
        ("before:replace:vectors.npy#1", False),  # a half-written one
        ("before:replace:segment.json#1", False),  # all its files, no record
        ("after:new_version_dir#1", False),  # a sealed segment, an empty version folder
        ("before:replace:manifest.json#1", False),  # the version's manifest half-written
        ("before:replace:CURRENT#1", False),  # sealed, never published; CURRENT's temporary file
        ("after:replace:CURRENT#1", True),  # published; the previous version not yet removed
    ]
    for kill_on, published in steps:
        before = index_state(run.reader)
        run.mutate_corpus()
        after = corpus_state(settings)
        assert after != before
        run_killed(run, {"kind": "build"}, kill_on)
        assert index_state(run.reader) == (after if published else before), kill_on
        assert leftovers(index_dir), kill_on  # a segment or version the live one does not name
        run.finish()

    # delete_document killed after the corpus file is gone: the index still has it until the next build
    victim = run._writable(index_state(run.reader))[0]
    run_killed(run, {"kind": "delete", "doc_id": victim}, "after:remove_from_corpus#1")
    assert victim in run.reader.index.articles and victim not in corpus_state(settings)
    run.finish()
    assert victim not in run.reader.index.articles

    # a .txt article replaced by one with metadata (.jsonl), killed before the old file is removed:
    # deleting it later removes both files, so a later build cannot bring the old text back
    target = run._writable(index_state(run.reader))[0]
    replacement = {"doc_id": target, "text": run._text(), "title": "新的标题", "date": "2025-03-01"}
    run_killed(run, {"kind": "add", "doc": replacement}, "after:replace:corpus#1")
    assert (corpus / f"{target}.txt").is_file() and (corpus / f"{target}.jsonl").is_file()
    run.finish()
    run.reader.delete_document(target)
    assert not list(corpus.glob(f"{target}.*"))
    run.finish()
    assert target not in run.reader.index.articles
    assert json.dumps(sorted(run.reader.index.articles)) == json.dumps(sorted(corpus_state(settings)))
