"""The service's own write at up to 1M passages: add one article until searchable, delete one until never
cited, through ``Engine.add_document`` / ``delete_document`` (segment + tombstone + publish + reload).

    python benchmarks/service_write.py [--passages 1000000] [--samples 5]

Building a 1M-passage index through ``qa index`` means tokenising 1M passages with jieba (about 13
minutes) and embedding them; instead the big segment is written directly with the library's own
segment writer functions (``layout.new_segment_dir``, ``write_segment_tables``, ``build_store``,
``Postings``, ``layout.seal_segment``, ``seal_version``, ``publish``), then opened by a real engine:

- passages: ``--passages`` rows in articles of 10 (a JSONL corpus file per 500 articles, loaded by the
  service's loader and chunked by its chunker: each article is ten ~100-character paragraphs, one
  passage each);
- BM25 postings: those of ``benchmarks/lexical_engines.py``'s synthetic corpus (real inews token lists
  recombined), reused from its cache when it has built them for the same N;
- vectors: random unit vectors at e5-small's width (384), HNSW above ``flat_max_passages``, the fake
  encoder for the written articles (what is measured is the index engine, not the model);
- the big segment's tables hold no tokens and no sentence tokens for its rows: the real token lists of 1M passages
  would be ~160M Python strings (well over 8 GB) in the process; no write reads them (a write's
  segment has its own tokens), but questions' passage reranking does, so no answer quality is measured.

Writes JSON into ``benchmarks/results/``. Not a test: run it on purpose on a quiet machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

import qa
from qa.config import load_settings
from qa.documents import NewDocument
from qa.embeddings.vector_store import build_store
from qa.engine import Engine
from qa.index import layout
from qa.index.builder import write_segment_tables
from qa.index.local_passages import LEXICAL_DIR, VECTORS_DIR
from qa.index.manifest import Counts, Manifest, SegmentRef
from qa.index.tables import Tables
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import load_corpus
from qa.text.segment_bm25 import Postings

ROOT = Path(__file__).resolve().parent
ROWS = 10
PROBE = (  # {day}: each sample's article is its own (identical copies are folded into one)
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月{day}日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。"
    "两市还将互设旅游推广中心,每年举办文化交流周。\n"
)
QUESTION = "芽庄市与哪个城市签署了友好城市协议?"


def paragraph(a: int, j: int) -> str:
    # ~100 characters, one passage (chunking.max_chars is 160), unique so that no line is a repeat
    return (
        f"第{a}篇报道第{j}段:"
        + "本市今日召开会议,研究部署经济社会发展重点工作,强调要稳增长、促改革、调结构、惠民生、防风险。" * 2
    )


def write_corpus(folder: Path, articles: int) -> None:
    folder.mkdir(parents=True)
    for first in range(0, articles, 500):
        with open(folder / f"syn-{first // 500:04d}.jsonl", "w", encoding="utf-8") as out:
            for a in range(first, min(articles, first + 500)):
                text = "\n\n".join(paragraph(a, j) for j in range(ROWS))
                record = {"id": f"syn-{a}", "title": f"合成报道{a}", "text": text}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")


def postings(n: int, folder: Path) -> str:
    """The big segment's BM25 files: lexical_engines.py's, when it has built them at this N."""
    cached = ROOT / ".cache" / "lexical" / f"engines-{n}" / "ours" / "s-0"
    folder.mkdir(parents=True)
    if (cached / "indptr.npy").exists():
        for path in cached.glob("*.npy"):
            shutil.copyfile(path, folder / path.name)
        return f"copied from {cached}"
    sys.path.insert(0, str(ROOT))
    from lexical_engines import Corpus, make_corpus

    corpus = Corpus(make_corpus(n, 300, 13))
    Postings.build(corpus.token_lists(0, n)).save(folder)
    return "built from lexical_engines.py's corpus"


def build_big(engine: Engine, n: int, work: Path) -> dict[str, Any]:
    s = engine.settings
    articles = n // ROWS
    t0 = time.perf_counter()
    write_corpus(s.corpus_dir, articles)
    corpus = load_corpus(s.corpus_dir, s.corpus.patterns, s.corpus.max_file_bytes)
    chunked = [(a, chunk_article(a, **s.chunking.kwargs())) for a in corpus.articles]
    assert all(len(c) == ROWS for _, c in chunked), "every synthetic article must be ten passages"
    out: dict[str, Any] = {"corpus_s": time.perf_counter() - t0}
    key = engine.indexing.index_key()
    folder = layout.new_segment_dir(s.index_dir)
    t0 = time.perf_counter()
    out["postings"] = postings(n, folder / LEXICAL_DIR)
    out["postings_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rng = np.random.default_rng(13)
    vectors = np.empty((n, key.dense.dim), dtype=np.float32)
    for first in range(0, n, 100_000):
        v = rng.standard_normal((min(100_000, n - first), key.dense.dim), dtype=np.float32)
        vectors[first : first + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    store = build_store(vectors, key.dense.dim, s.vector_store.store_params())
    store.save(folder / VECTORS_DIR)
    out["store"] = type(store).__name__
    out["vectors_s"] = time.perf_counter() - t0
    del vectors, store
    t0 = time.perf_counter()
    digests = [(a, f"{i:064x}") for i, (a, _) in enumerate(chunked)]
    chunks = [c for _, cs in chunked for c in cs]
    empty: list[list[str]] = [[] for _ in chunks]  # no tokens, no sentences: see the module's docstring
    titles: list[list[str]] = [[] for _ in digests]
    unnamed: list[tuple[list[str], list[str]]] = [([], []) for _ in chunks]
    write_segment_tables(folder, Tables.encode(digests, chunks, empty, empty, titles, unnamed))
    seal = layout.seal_segment(folder, {"rows": len(chunks), "articles": len(digests)})
    version = layout.new_version_dir(s.index_dir)
    manifest = Manifest(
        key=key,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        counts=Counts(len(digests), len(chunks)),
        segments=(SegmentRef(folder.name, seal, frozenset()),),
    )
    layout.seal_version(version, manifest.to_json())
    layout.publish(s.index_dir, version, [folder.name])
    out["tables_seal_publish_s"] = time.perf_counter() - t0
    return out


def profile_top(call: Any, lines: int = 18) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(lines)
    return text.getvalue()


def fresh_sample(engine: Engine) -> int:
    """The first sample number whose probe is not in the index and whose victim is: an index measured
    before (``--reuse``, or a copy of one) holds the probes and lacks the victims of the runs before."""
    articles = engine.indexing.current().index.articles
    i = 0
    while f"probe-{i}" in articles or f"syn-{i}" not in articles:
        i += 1
    return i


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="measure the index of an earlier run again")
    parser.add_argument(
        "--work", type=Path, default=None, help="the corpus and index folder (default .cache/service-write-N)"
    )
    parser.add_argument("--build-only", action="store_true", help="build the index, measure nothing")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n = args.passages
    work = args.work or ROOT / ".cache" / f"service-write-{n}"
    reuse = args.reuse and (work / "index" / "CURRENT").exists()
    if not reuse:
        shutil.rmtree(work, ignore_errors=True)
    settings = load_settings(
        corpus={"dir": work / "corpus"},
        index={"dir": work / "index", "show_progress": False},
        model={"name": "fake:384"},
        retrieval={"min_dense_score": -1.0, "ranker": "hand", "abstention": "rules"},
    )
    engine = Engine(settings)
    res: dict[str, Any] = {"passages": n, "date": time.strftime("%Y-%m-%d"), "reused_build": reuse}
    res["code"] = str(Path(qa.__file__).parent.parent)  # the tree on PYTHONPATH
    if not reuse:
        res["build"] = build_big(engine, n, work)
        print(f"big segment: {json.dumps(res['build'])}", flush=True)
    if args.build_only:
        return
    t0 = time.perf_counter()
    engine.indexing.open(build_if_missing=False)
    res["open_s"] = time.perf_counter() - t0
    res["rss_open_mb"] = psutil.Process().memory_info().rss / 1e6
    print(f"opened in {res['open_s']:.1f} s, RSS {res['rss_open_mb']:.0f} MB", flush=True)
    engine.ask(QUESTION)  # warm
    first = fresh_sample(engine)
    res["first_sample"] = first

    adds, deletes = [], []
    for i in range(first, first + args.samples):
        engine.indexing.wait_for_merges()
        t = time.perf_counter()
        engine.add_document(NewDocument(doc_id=f"probe-{i}", text=PROBE.format(day=i + 1)))
        adds.append(time.perf_counter() - t)
        assert any(h.chunk.doc_id == f"probe-{i}" for h in engine.ask(QUESTION, top_k=10).hits)
        engine.indexing.wait_for_merges()
        victim = f"syn-{i}"
        t = time.perf_counter()
        engine.delete_document(victim)
        deletes.append(time.perf_counter() - t)
        assert victim not in engine.indexing.current().index.articles
        print(f"sample {i}: add {adds[-1] * 1000:.0f} ms, delete {deletes[-1] * 1000:.0f} ms", flush=True)
    engine.indexing.wait_for_merges()
    res["add_s"] = statistics.median(adds)
    res["delete_s"] = statistics.median(deletes)
    res["add_all_s"], res["delete_all_s"] = adds, deletes
    res["segments_after"] = len(engine.indexing.current().index.segments)
    res["rss_after_mb"] = psutil.Process().memory_info().rss / 1e6
    k = first + args.samples
    res["profile_add"] = profile_top(
        lambda: engine.add_document(NewDocument(doc_id=f"probe-{k}", text=PROBE.format(day=k + 1)))
    )
    engine.indexing.wait_for_merges()
    res["profile_delete"] = profile_top(lambda: engine.delete_document(f"syn-{k}"))
    engine.close()
    print(res["profile_add"])
    print(
        f"\n{n:,} passages: add one article {res['add_s'] * 1000:.0f} ms, "
        f"delete one {res['delete_s'] * 1000:.0f} ms (medians of {k})"
    )
    out = args.out or ROOT / "results" / f"service_write_{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
