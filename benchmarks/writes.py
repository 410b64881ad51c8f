"""What one write costs, against corpus size and between two versions of the code, measured in one run.

    python benchmarks/writes.py [--articles 7353] [--samples 5] [--tree /path/to/old/checkout] ...
    python benchmarks/writes.py --writes-only --samples 15 [--tree ...]
    python benchmarks/writes.py --bulk 1000 [--bulk-base 2000] [--samples 3]

For each code tree (this checkout, plus every ``--tree``: e.g. a ``git worktree`` of an older commit) and
each corpus (the five seeds, and ``--articles`` inews articles: the whole package is about 75k passages), a
child process with that tree on ``PYTHONPATH`` builds the index, then times (medians of ``--samples``):

- ``POST /v1/documents`` as the engine does it: add one article until it is searchable (the call returns
  after the new snapshot is loaded), then delete it until it is never cited;
- a re-index of the unchanged corpus (``qa index`` finding nothing to do);
- a question (``Engine.ask``), to see that reads did not get slower;

and then, on the index it built, in new processes:

- start-up: from the process's start to a loaded engine (``Engine.open`` of the built index), its
  resident memory (anonymous and file-backed) then and after ``--questions`` distinct questions (titles
  and first lines of the corpus's articles, the same for every tree), and ``Engine.ask`` p50/p95 over
  those (every passage new to the caches);
- ``qa serve``: from spawning it to ``GET /readyz`` answering 200 (it syncs the index with the corpus
  first: a re-index of the unchanged corpus), and its resident memory then.

The encoder is the deterministic fake one at e5-small's width (384): what is measured is the index
engine, not the model (one article's passages take the real model about 50 ms more). With
``--writes-only`` only the writes, re-index and question are timed (no new processes), and each write is
split into fsyncs, ``build_index``, the reload and the rest (the corpus file, locks).

``--bulk N`` measures instead a bulk add with the real encoder (the service's default model, int8 where
it is faster): ``N`` inews articles from ``--bulk-first`` on, as one JSONL file dropped into the corpus
of an index of the first ``--bulk-base`` articles (built once and kept), then ``Engine.build`` (what
``qa index`` runs), against encoding the same passages alone, as the build batches them, in the same
process, the two alternating sample by sample.

Writes a table and JSON into ``benchmarks/results/``. Not a test: run it on purpose on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = ROOT / ".cache" / "writes"
PROBE = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。"
    "两市还将互设旅游推广中心,每年举办文化交流周。\n"
)
QUESTIONS = ["芽庄市与哪个城市签署了友好城市协议?", "胡志明市与中国多少个地方保持友好合作关系?", "越南的出口"]


def write_corpus(folder: Path, corpus: str, articles: int) -> None:
    if folder.exists():
        return
    folder.mkdir(parents=True)
    if corpus == "seeds":
        for path in sorted((REPO / "seeds").iterdir()):
            shutil.copyfile(path, folder / path.name)
        return
    sys.path.insert(0, str(ROOT))
    from inews import articles as inews_articles
    from inews import write_corpus_files

    write_corpus_files(folder, inews_articles()[:articles])


# The settings of every child and server, as overrides of the tree's own config.toml (older trees know
# fewer keys): the fake encoder at e5's width, and no abstention on its meaningless cosines.
OVERRIDES: dict[str, dict[str, Any]] = {
    "index": {"show_progress": False},
    "model": {"name": "fake:384"},
    "retrieval": {"min_dense_score": -1.0, "ranker": "hand", "abstention": "rules"},
}


def _settings(corpus_dir: Path, index_dir: Path, *, real_model: bool = False) -> Any:
    """``real_model``: the tree's own model settings (e5, int8 where it is faster), from this checkout's
    model folder, and its own retrieval settings."""
    from qa.config import load_settings

    if real_model:
        return load_settings(
            Path.cwd() / "config.toml",
            corpus={"dir": corpus_dir},
            index={"dir": index_dir, **OVERRIDES["index"]},
            model={"cache_dir": str(REPO / ".qa" / "models")},
        )
    return load_settings(
        Path.cwd() / "config.toml",
        corpus={"dir": corpus_dir},
        index={"dir": index_dir, **OVERRIDES["index"]},
        model=OVERRIDES["model"],
        retrieval=OVERRIDES["retrieval"],
    )


def memory() -> dict[str, float]:
    """This process's resident memory in GB: all of it, anonymous, and pages of mapped files."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1e6  # kB → GB
    return {"rss_gb": fields["VmRSS"], "anon_gb": fields["RssAnon"], "file_gb": fields["RssFile"]}


def startup_child(corpus_dir: Path, index_dir: Path, questions: Path, spawned: float) -> dict[str, Any]:
    """A new process: time to a loaded engine (from ``spawned``, the parent's clock before it started
    this process), memory then, and after every question of ``questions`` asked once."""
    from qa.engine import Engine

    engine = Engine(_settings(corpus_dir, index_dir)).open(build_if_missing=False)
    loaded = time.time() - spawned
    after_load = memory()
    times = []
    for question in json.loads(questions.read_text(encoding="utf-8")):
        t = time.perf_counter()
        engine.ask(question)
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "load_s": loaded,
        "load_memory": after_load,
        "questions": len(times),
        "ask_p50_s": statistics.median(times),
        "ask_p95_s": times[int(0.95 * (len(times) - 1))],
        "asked_memory": memory(),
    }


def serve_ready(tree: Path, corpus_dir: Path, index_dir: Path, port: int) -> dict[str, Any]:
    """Spawn ``qa serve`` of ``tree`` on the built index; seconds until /readyz answers 200, and its RSS."""
    import urllib.error
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(tree), "QA_CONFIG": str(tree / "config.toml")}
    env |= {"QA_CORPUS__DIR": str(corpus_dir), "QA_INDEX__DIR": str(index_dir), "QA_SERVER__PORT": str(port)}
    for section, values in OVERRIDES.items():
        for key, value in values.items():
            env[f"QA_{section.upper()}__{key.upper()}"] = (
                json.dumps(value) if not isinstance(value, str) else value
            )
    # Its log goes to a file: a pipe nobody reads fills up and stops the server mid-start.
    log_path = WORK / f"serve-{port}.log"
    started = time.time()
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-c", "from qa.cli import main; main()", "serve", "--port", str(port)],
            env=env,
            cwd=tree,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"qa serve of {tree} stopped: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        ready = time.time() - started
        status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1e6
        return {"ready_s": ready, "rss_gb": rss}
    finally:
        server.terminate()
        server.wait(timeout=30)


class Split:
    """Where one write's time goes: fsyncs, the build (``builder.build_index``, fsyncs included) and the
    reload of the new version, timed by wrapping them (every tree has them under these names)."""

    def __init__(self) -> None:
        from qa.index import builder
        from qa.indexing import IndexService

        self.seconds = {"fsync": 0.0, "build_index": 0.0, "reload": 0.0}
        self.fsyncs = 0

        def timed(name: str, call: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                t = time.perf_counter()
                try:
                    return call(*args, **kwargs)
                finally:
                    self.seconds[name] += time.perf_counter() - t
                    if name == "fsync":
                        self.fsyncs += 1

            return wrapper

        os.fsync = timed("fsync", os.fsync)
        builder.build_index = timed("build_index", builder.build_index)  # type: ignore[assignment]
        IndexService.reload = timed("reload", IndexService.reload)  # type: ignore[method-assign]

    def start(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.fsyncs = 0

    def taken(self, total: float) -> dict[str, float]:
        s = self.seconds
        return {
            "total": total,
            "nofsync": total - s["fsync"],
            "fsync": s["fsync"],
            "fsyncs": self.fsyncs,
            "build_index": s["build_index"],
            "reload": s["reload"],
            "rest": total - s["build_index"] - s["reload"],  # the corpus file, locks, the old-version check
        }


def median_sample(splits: list[dict[str, float]]) -> dict[str, float]:
    """The split of the sample whose total is the median (the lower one of an even count), so that its
    parts add up; with the median of each part over every sample (``median_*``)."""
    if not splits:
        return {}
    middle = sorted(splits, key=lambda s: s["total"])[(len(splits) - 1) // 2]
    return {**middle, **{f"median_{k}": statistics.median(s[k] for s in splits) for k in splits[0]}}


def child(corpus_dir: Path, index_dir: Path, samples: int) -> dict[str, Any]:
    """Runs in the tree under test: whatever its ``qa`` is."""
    from qa.documents import NewDocument
    from qa.engine import Engine

    settings = _settings(corpus_dir, index_dir)
    engine = Engine(settings)
    started = time.perf_counter()
    report = engine.build(show_progress=False)
    build = time.perf_counter() - started
    split = Split()
    add_splits, delete_splits = [], []

    def settle() -> None:
        wait = getattr(engine.indexing, "wait_for_merges", None)
        if wait is not None:
            wait()

    adds, deletes, reindex, asks = [], [], [], []
    for i in range(samples):
        settle()
        split.start()
        t = time.perf_counter()
        engine.add_document(NewDocument(doc_id=f"probe-{i}", text=PROBE))
        adds.append(time.perf_counter() - t)
        add_splits.append(split.taken(adds[-1]))
        assert any(h.chunk.doc_id == f"probe-{i}" for h in engine.ask(QUESTIONS[0], top_k=10).hits)
        settle()
        split.start()
        t = time.perf_counter()
        engine.delete_document(f"probe-{i}")
        deletes.append(time.perf_counter() - t)
        delete_splits.append(split.taken(deletes[-1]))
        assert all(h.chunk.doc_id != f"probe-{i}" for h in engine.ask(QUESTIONS[0], top_k=10).hits)
        settle()
        t = time.perf_counter()
        engine.build(show_progress=False)
        reindex.append(time.perf_counter() - t)
        for question in QUESTIONS:
            t = time.perf_counter()
            engine.ask(question)
            asks.append(time.perf_counter() - t)
    engine.close()
    return {
        "articles": report.articles,
        "passages": report.passages,
        "build_s": build,
        "add_s": statistics.median(adds),
        "delete_s": statistics.median(deletes),
        "reindex_s": statistics.median(reindex),
        "ask_s": statistics.median(asks),
        "samples": samples,
        "add_all_s": adds,
        "delete_all_s": deletes,
        "add_split": median_sample(add_splits),
        "delete_split": median_sample(delete_splits),
    }


def bulk_child(base_dir: Path, first: int, count: int, samples: int) -> dict[str, Any]:
    """A bulk add with the real encoder (the service's default model and precision): ``count`` inews
    articles from ``first`` on, as one JSONL file dropped into the corpus of ``base_dir`` (an index built
    there before, restored from its copy before each sample), then ``Engine.build`` (what ``qa index``
    runs). Each sample also encodes the same passages alone, as the build batches them, in this process;
    the order of the two alternates."""
    from qa.engine import Engine
    from qa.index.builder import ENCODE_BATCH
    from qa.index.search_index import passage_text
    from qa.ingest.chunker import chunk_article
    from qa.ingest.loader import load_file

    sys.path.insert(0, str(ROOT))
    from inews import articles as inews_articles

    corpus_dir, index_dir, pristine = base_dir / "corpus", base_dir / "index", base_dir / "index-base"
    settings = _settings(corpus_dir, index_dir, real_model=True)
    bulk = corpus_dir / "bulk.jsonl"
    picked = inews_articles()[first : first + count]
    payload = "".join(
        json.dumps({"id": f"inews-{i}", "title": t, "text": c}, ensure_ascii=False) + "\n"
        for i, (t, c) in enumerate(picked, start=first)
    )
    staging = base_dir / "bulk.jsonl"  # written once, then copied in: the same bytes every sample
    staging.write_text(payload, encoding="utf-8")
    articles = [a for a in load_file(staging, settings.corpus.max_file_bytes) if not isinstance(a, Exception)]
    batches: list[list[str]] = [[]]
    for article in articles:  # the build's batches: whole articles, at least ENCODE_BATCH passages each
        if len(batches[-1]) >= ENCODE_BATCH:
            batches.append([])
        chunks = chunk_article(article, **settings.chunking.kwargs())
        batches[-1].extend(passage_text(c, article.title) for c in chunks)
    passages = sum(map(len, batches))
    engine = Engine(settings)
    engine.encoder.encode_passages(batches[0][:32])  # the model loaded and warm before any timing
    out: dict[str, Any] = {"articles": len(articles), "passages": passages, "samples": []}
    for i in range(samples):
        timed: dict[str, Any] = {}
        for step in ("encode", "bulk") if i % 2 == 0 else ("bulk", "encode"):
            if step == "encode":
                t = time.perf_counter()
                for batch in batches:
                    engine.encoder.encode_passages(batch)
                timed["encode_alone_s"] = time.perf_counter() - t
                continue
            shutil.rmtree(index_dir, ignore_errors=True)
            shutil.copytree(pristine, index_dir)
            engine = Engine(settings, encoder=engine.encoder)
            engine.open(build_if_missing=False)
            # A running service's tokenizer has its dictionaries loaded (a new `qa index` process loads
            # them first, about a second, whatever it writes): not part of what a bulk add costs.
            engine.tokenizer.tokens("胡志明市与中国")
            shutil.copyfile(staging, bulk)
            t = time.perf_counter()
            report = engine.build(show_progress=False)
            timed["bulk_s"] = time.perf_counter() - t
            timed["build_timings"] = report.timings
            timed["encoded"] = report.encoded
            assert len(report.added) == len(articles), report
            engine.close()
            bulk.unlink()
        timed["ratio"] = timed["bulk_s"] / timed["encode_alone_s"]
        print(json.dumps(timed), file=sys.stderr, flush=True)
        out["samples"].append(timed)
    shutil.rmtree(index_dir, ignore_errors=True)
    shutil.copytree(pristine, index_dir)
    out["bulk_s"] = statistics.median(s["bulk_s"] for s in out["samples"])
    out["encode_alone_s"] = statistics.median(s["encode_alone_s"] for s in out["samples"])
    out["ratio"] = statistics.median(s["ratio"] for s in out["samples"])
    out["passages_per_s"] = passages / out["encode_alone_s"]
    return out


def bulk_base(tree: Path, base_dir: Path, articles: int) -> dict[str, Any]:
    """The index the bulk adds go onto: the first ``articles`` inews articles, built once with the real
    encoder (kept in ``base_dir/index-base`` across runs)."""
    if (base_dir / "index-base" / "CURRENT").exists():
        return {"reused": True}
    shutil.rmtree(base_dir, ignore_errors=True)
    sys.path.insert(0, str(ROOT))
    from inews import articles as inews_articles
    from inews import write_corpus_files

    (base_dir / "corpus").mkdir(parents=True)
    write_corpus_files(base_dir / "corpus", inews_articles()[:articles])
    result = run_child(tree, ["bulk-base", str(base_dir)])
    shutil.copytree(base_dir / "index", base_dir / "index-base")
    return result


def questions_of(corpus_dir: Path, count: int) -> list[str]:
    """``count`` distinct questions from the corpus: its articles' titles (JSONL) and first lines (.txt),
    spread over the corpus, cut to 40 characters."""
    found: list[str] = []
    for path in sorted(corpus_dir.iterdir()):
        if path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                found.append(str(json.loads(line).get("title") or ""))
        else:
            found.extend(path.read_text(encoding="utf-8").splitlines())
    found = list(dict.fromkeys(q.strip()[:40] for q in found if len(q.strip()) >= 6))
    step = max(1, len(found) // count)
    return found[::step][:count]


def run_child(
    tree: Path, args: list[str], env: dict[str, str] | None = None, script: Path | None = None
) -> dict[str, Any]:
    """Run ``script`` (this file) with ``args`` in a new process with ``tree``'s ``qa``; its last line's JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree)} if env is None else env
    command = [sys.executable, str((script or Path(__file__)).resolve()), *args]
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree} {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_tree(
    tree: Path,
    label: str,
    corpora: dict[str, Path],
    samples: int,
    questions: dict[str, Path],
    port: int,
    writes_only: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, corpus_dir in corpora.items():
        index_dir = WORK / f"index-{label}-{name}"
        shutil.rmtree(index_dir, ignore_errors=True)
        out[name] = run_child(tree, ["child", str(corpus_dir), str(index_dir), "--samples", str(samples)])
        if writes_only:
            print(f"{label:>8} {name:>6}: {json.dumps(out[name])}", flush=True)
            shutil.rmtree(index_dir, ignore_errors=True)
            continue
        starts = [
            run_child(
                tree, ["startup", str(corpus_dir), str(index_dir), str(questions[name]), repr(time.time())]
            )
            for _ in range(samples)
        ]
        serves = [serve_ready(tree, corpus_dir, index_dir, port) for _ in range(samples)]
        out[name]["startup"] = starts
        out[name]["serve"] = serves
        out[name]["load_s"] = statistics.median(s["load_s"] for s in starts)
        out[name]["ready_s"] = statistics.median(s["ready_s"] for s in serves)
        out[name]["cold_ask_p50_s"] = statistics.median(s["ask_p50_s"] for s in starts)
        out[name]["rss_load_gb"] = statistics.median(s["load_memory"]["rss_gb"] for s in starts)
        out[name]["rss_asked_gb"] = statistics.median(s["asked_memory"]["rss_gb"] for s in starts)
        out[name]["anon_asked_gb"] = statistics.median(s["asked_memory"]["anon_gb"] for s in starts)
        out[name]["serve_rss_gb"] = statistics.median(s["rss_gb"] for s in serves)
        print(f"{label:>8} {name:>6}: {json.dumps(out[name])}", flush=True)
        shutil.rmtree(index_dir, ignore_errors=True)
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| code | corpus | passages | add | delete | re-index unchanged | ask (warm) | start to loaded engine | "
        "serve to /readyz | RSS loaded / after questions (anon) | serve RSS | ask p50, new process |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if not all("load_s" in r for corpora in results.values() for r in corpora.values()):
        return writes_table(results)
    for label, corpora in results.items():
        for name, r in corpora.items():
            rows.append(
                f"| {label} | {name} | {r['passages']:,} | {r['add_s'] * 1000:.0f} ms | "
                f"{r['delete_s'] * 1000:.0f} ms | {r['reindex_s'] * 1000:.0f} ms | {r['ask_s'] * 1000:.1f} ms | "
                f"{r['load_s']:.2f} s | {r['ready_s']:.2f} s | {r['rss_load_gb']:.2f} / {r['rss_asked_gb']:.2f} "
                f"({r['anon_asked_gb']:.2f}) GB | {r['serve_rss_gb']:.2f} GB | {r['cold_ask_p50_s'] * 1000:.1f} ms |"
            )
    for label, big, small in _sizes(results):
        rows.append(
            f"\n{label}: at {big['passages']:,} passages vs {small['passages']}: add ×{big['add_s'] / small['add_s']:.1f}, "
            f"delete ×{big['delete_s'] / small['delete_s']:.1f}"
        )
    for first, other, name, a, b in _trees(results):
        rows.append(
            f"{first} / {other} on {name}: add ×{a['add_s'] / b['add_s']:.3f}, "
            f"delete ×{a['delete_s'] / b['delete_s']:.3f}, re-index ×{a['reindex_s'] / b['reindex_s']:.3f}, "
            f"ask ×{a['ask_s'] / b['ask_s']:.2f}, start ×{a['load_s'] / b['load_s']:.2f}, "
            f"ready ×{a['ready_s'] / b['ready_s']:.2f}, RSS after questions "
            f"×{a['rss_asked_gb'] / b['rss_asked_gb']:.2f}, new-process ask ×{a['cold_ask_p50_s'] / b['cold_ask_p50_s']:.2f}"
        )
    return "\n".join(rows)


def _sizes(results: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Each tree that measured both corpora: (label, the inews results, the seeds results)."""
    return [
        (label, corpora["inews"], corpora["seeds"])
        for label, corpora in results.items()
        if "seeds" in corpora and "inews" in corpora
    ]


def _trees(
    results: dict[str, dict[str, Any]],
) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """The first tree against each other one, corpus by corpus: (first, other, corpus, its, theirs)."""
    labels = list(results)
    return [
        (labels[0], other, name, results[labels[0]][name], results[other][name])
        for other in labels[1:]
        for name in results[labels[0]]
    ]


def writes_table(results: dict[str, dict[str, Any]]) -> str:
    """The writes alone (``--writes-only``): medians and where the time goes, then the ratios."""
    rows = [
        "| code | corpus | passages | write | median (min–max) | median sample: fsync (count) | build_index "
        "(fsyncs in it) | reload | rest | median fsync |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, corpora in results.items():
        for name, r in corpora.items():
            for write in ("add", "delete"):
                every, split = r[f"{write}_all_s"], r[f"{write}_split"]
                rows.append(
                    f"| {label} | {name} | {r['passages']:,} | {write} | {r[f'{write}_s'] * 1000:.0f} ms "
                    f"({min(every) * 1000:.0f}–{max(every) * 1000:.0f}) | {split['fsync'] * 1000:.0f} ms "
                    f"({split['fsyncs']:.0f}) | {split['build_index'] * 1000:.0f} ms | "
                    f"{split['reload'] * 1000:.0f} ms | {split['rest'] * 1000:.0f} ms | "
                    f"{split['median_fsync'] * 1000:.0f} ms |"
                )
    for label, big, small in _sizes(results):
        rows.append(
            f"\n{label}: at {big['passages']:,} passages vs {small['passages']}: "
            f"add ×{big['add_s'] / small['add_s']:.2f}, delete ×{big['delete_s'] / small['delete_s']:.2f}; "
            f"without fsyncs add ×{nofsync(big, 'add') / nofsync(small, 'add'):.2f}, "
            f"delete ×{nofsync(big, 'delete') / nofsync(small, 'delete'):.2f}"
        )
    for first, other, name, a, b in _trees(results):
        rows.append(
            f"{first} / {other} on {name}: add ×{a['add_s'] / b['add_s']:.3f}, "
            f"delete ×{a['delete_s'] / b['delete_s']:.3f}, re-index ×{a['reindex_s'] / b['reindex_s']:.3f}, "
            f"ask ×{a['ask_s'] / b['ask_s']:.2f}"
        )
    return "\n".join(rows)


def nofsync(r: dict[str, Any], write: str) -> float:
    """The median of the write's time less its fsyncs' time, over every sample."""
    return float(r[f"{write}_split"]["median_nofsync"])


def run_bulk(args: argparse.Namespace) -> None:
    """``--bulk``: for this checkout and every ``--tree``, the bulk add against encoding alone."""
    results: dict[str, Any] = {}
    for label, tree in [("this", REPO), *((f"tree{i}", t.resolve()) for i, t in enumerate(args.tree, 1))]:
        base_dir = WORK / f"bulk-{label}-{args.bulk_base}"
        base = bulk_base(tree, base_dir, args.bulk_base)
        child_args = ["bulk", str(base_dir), str(args.bulk_first), str(args.bulk), str(args.samples)]
        results[label] = {"base": base, **run_child(tree, child_args)}
        r = results[label]
        print(
            f"{label}: {r['articles']:,} articles, {r['passages']:,} passages onto {args.bulk_base:,} articles: "
            f"bulk add {r['bulk_s']:.1f} s, encoding them alone {r['encode_alone_s']:.1f} s "
            f"({r['passages_per_s']:.0f} passages/s), ratio ×{r['ratio']:.3f} (median of {args.samples})",
            flush=True,
        )
    out = args.out.with_name("writes_bulk.json") if args.out.name == "writes.json" else args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        parser = argparse.ArgumentParser()
        parser.add_argument("mode")
        parser.add_argument("corpus", type=Path)
        parser.add_argument("index", type=Path)
        parser.add_argument("--samples", type=int, default=5)
        a = parser.parse_args()
        print(json.dumps(child(a.corpus, a.index, a.samples)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "bulk":
        _, _, base_dir, first, count, samples = sys.argv
        print(json.dumps(bulk_child(Path(base_dir), int(first), int(count), int(samples))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "bulk-base":
        base = Path(sys.argv[2])
        engine = __import__("qa.engine", fromlist=["Engine"]).Engine(
            _settings(base / "corpus", base / "index", real_model=True)
        )
        t = time.perf_counter()
        report = engine.build(show_progress=False)
        print(
            json.dumps(
                {"articles": report.articles, "passages": report.passages, "build_s": time.perf_counter() - t}
            )
        )
        return
    if len(sys.argv) > 1 and sys.argv[1] == "startup":
        _, _, corpus, index, questions, spawned = sys.argv
        print(json.dumps(startup_child(Path(corpus), Path(index), Path(questions), float(spawned))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=7353, help="inews articles (all: 7353)")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to compare")
    parser.add_argument("--questions", type=int, default=200, help="distinct questions per start-up")
    parser.add_argument("--port", type=int, default=8765, help="for qa serve")
    parser.add_argument("--only", choices=["seeds", "inews"], help="one corpus only")
    parser.add_argument("--writes-only", action="store_true", help="no start-up, serve or memory figures")
    parser.add_argument(
        "--bulk", type=int, default=0, help="only a bulk add of this many inews articles, real encoder"
    )
    parser.add_argument("--bulk-base", type=int, default=2000, help="articles of the index it goes onto")
    parser.add_argument("--bulk-first", type=int, default=2000, help="the first inews article added")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "writes.json")
    args = parser.parse_args()
    if args.bulk:
        run_bulk(args)
        return
    corpora = {"seeds": WORK / "corpus-seeds", "inews": WORK / f"corpus-inews-{args.articles}"}
    write_corpus(corpora["seeds"], "seeds", 0)
    write_corpus(corpora["inews"], "inews", args.articles)
    if args.only:
        corpora = {args.only: corpora[args.only]}
    questions = {}
    for name, folder in corpora.items():
        questions[name] = WORK / f"questions-{name}.json"
        questions[name].write_text(json.dumps(questions_of(folder, args.questions), ensure_ascii=False))
    only = args.writes_only
    results = {"this": run_tree(REPO, "this", corpora, args.samples, questions, args.port, only)}
    for i, tree in enumerate(args.tree, start=1):
        results[f"tree{i}"] = run_tree(
            tree.resolve(), f"tree{i}", corpora, args.samples, questions, args.port, only
        )
    text = table(results)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"results": results, "trees": [str(t) for t in args.tree]}, indent=1))
    args.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
