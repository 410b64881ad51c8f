"""Lexical engines side by side at up to 1M passages: ours (segmented postings), tantivy, SQLite FTS5, bm25s.

    python benchmarks/lexical_engines.py [--passages 1000000] [--queries 300] [--engines ours,tantivy,fts5,bm25s]

Corpus: the token lists of every real inews passage (chunked and tokenised by the service's own code:
``qa.ingest.chunker``, ``passage_text``, ``ChineseTokenizer`` = jieba words + CJK bigrams), recombined as
``benchmarks/scale.py`` does (the first half of one real passage's tokens, the second half of another's),
so the term statistics are those of real passages. Passages are grouped into articles of 10 consecutive
rows. Queries: real inews titles, tokenised as the service tokenises a question (``QueryBuilder``).

Every engine indexes the same tokens, pre-tokenised: ours and bm25s take the token lists (ours above
200k passages from the token ids with ``lean_postings``: the same arrays as ``Postings.build``, checked
equal between 50k and 200k, at about half its peak memory); tantivy a text field of the tokens joined by
spaces with its ``whitespace`` tokenizer (term frequencies, no positions); FTS5 a column of the same text
with ``unicode61`` told that every character of a token is a token character (so a space is the only
separator), no diacritic folding, default ``detail=full``.

One run, one engine at a time for what needs a process of its own:

- build (its own child process): seconds from the token-id arrays to a saved index, on-disk size;
- memory (a fresh child per engine): RSS after opening, and after the queries (anonymous / file pages);
- latency and agreement (one process with every index open, queries interleaved engine by engine):
  top-100 p50/p95/p99, and each engine's top 10 against ours (overlap@10, and a tie-aware overlap: the
  share of its top 10 scoring at least our 10th score under our scoring);
- one write, interleaved engine by engine (medians of ``--writes``): add one article (10 passages) and
  delete another, until a search sees both; ours as the service does it (a new small segment saved,
  fsynced and memory-mapped, the deleted rows tombstoned, ``SegmentedBM25`` over all segments again).
  bm25s has no incremental write: its write is a rebuild (its build time).

Writes a table and JSON into ``benchmarks/results/``. Not a test: run it on purpose on a quiet machine.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from qa.text.segment_bm25 import Postings, SegmentedBM25

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache" / "lexical"
ARTICLE_ROWS = 10  # passages per synthetic article
TOP = 100  # what each latency query asks for
ENGINES = ("ours", "tantivy", "fts5", "bm25s")


# -- corpus ----------------------------------------------------------------------------------------


def base_passages() -> tuple[list[str], list[np.ndarray]]:
    """Every real inews passage's tokens, as ids into a vocabulary (cached)."""
    path = CACHE / "base.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["vocab"], [np.asarray(r, dtype=np.int32) for r in data["rows"]]
    sys.path.insert(0, str(ROOT))
    from inews import articles, write_corpus_files

    from qa.config import load_settings
    from qa.index.search_index import passage_text
    from qa.ingest.chunker import chunk_article
    from qa.ingest.loader import load_corpus
    from qa.text.tokenize import ChineseTokenizer

    settings = load_settings(model={"name": "fake:384"})
    folder = CACHE / "inews-corpus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_corpus_files(folder, articles())
    corpus = load_corpus(folder, settings.corpus.patterns, settings.corpus.max_file_bytes)
    from qa.engine import Engine

    tokenizer: ChineseTokenizer = Engine(settings).tokenizer  # with the aliases and user dictionary
    ids: dict[str, int] = {}
    rows: list[list[int]] = []
    t0 = time.perf_counter()
    for article in corpus.articles:
        for chunk in chunk_article(article, **settings.chunking.kwargs()):
            tokens = tokenizer.tokens(passage_text(chunk, article.title))
            rows.append([ids.setdefault(t, len(ids)) for t in tokens])
    print(f"{len(rows)} real passages tokenised in {time.perf_counter() - t0:.0f} s", flush=True)
    path.write_text(json.dumps({"vocab": list(ids), "rows": rows}, ensure_ascii=False), encoding="utf-8")
    return list(ids), [np.asarray(r, dtype=np.int32) for r in rows]


class Corpus:
    """N synthetic passages as token ids (flat ids, offsets) over one vocabulary, saved once per N."""

    def __init__(self, folder: Path) -> None:
        self.vocab: list[str] = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        self.ids = np.load(folder / "ids.npy", mmap_mode="r")
        self.offsets = np.load(folder / "offsets.npy")
        self.n = self.offsets.size - 1 - ARTICLE_ROWS * 64  # the extra rows are new articles for writes
        self.queries: list[list[str]] = json.loads((folder / "queries.json").read_text(encoding="utf-8"))

    def row_ids(self, row: int) -> np.ndarray:
        return np.asarray(self.ids[self.offsets[row] : self.offsets[row + 1]])

    def tokens(self, row: int) -> list[str]:
        vocab = self.vocab
        return [vocab[i] for i in self.row_ids(row).tolist()]

    def token_lists(self, start: int, stop: int) -> list[list[str]]:
        vocab = self.vocab
        ids = np.asarray(self.ids[self.offsets[start] : self.offsets[stop]]).tolist()
        bounds = (self.offsets[start : stop + 1] - self.offsets[start]).tolist()
        return [[vocab[i] for i in ids[a:b]] for a, b in itertools.pairwise(bounds)]

    def texts(self, start: int, stop: int, batch: int = 50_000) -> Iterator[tuple[int, str]]:
        """(row, tokens joined by spaces), in batches so that no engine holds the whole corpus as text."""
        for first in range(start, stop, batch):
            last = min(stop, first + batch)
            for i, tokens in enumerate(self.token_lists(first, last), start=first):
                yield i, " ".join(tokens)

    def new_article(self, k: int) -> range:
        """The rows of the k-th new article (never indexed by a build)."""
        first = self.n + k * ARTICLE_ROWS
        return range(first, first + ARTICLE_ROWS)


def recombine(
    flat: npt.NDArray[np.int32],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """Rows made of two real passages each: ``tokens[a][: len // 2 + 1] + tokens[b][len // 2 :]``, gathered
    from the passages' token ids laid end to end (``flat``, row i at ``starts[i]``, ``lengths[i]`` long);
    the new rows' ids end to end, and each one's length."""
    a_len = np.minimum(lengths[a] // 2 + 1, lengths[a])
    b_from = lengths[b] // 2
    b_len = lengths[b] - b_from
    seg_start = np.stack([starts[a], starts[b] + b_from], axis=1).ravel()
    seg_len = np.stack([a_len, b_len], axis=1).ravel()
    ends = np.cumsum(seg_len)
    gather = np.arange(ends[-1], dtype=np.int64) - np.repeat(ends - seg_len - seg_start, seg_len)
    return flat[gather], a_len + b_len


def make_corpus(n: int, queries: int, seed: int) -> Path:
    folder = CACHE / f"corpus-{n}"
    if (folder / "queries.json").exists():
        return folder
    vocab, base = base_passages()
    t0 = time.perf_counter()
    lengths = np.fromiter(map(len, base), dtype=np.int64, count=len(base))
    starts = np.zeros(len(base) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    flat = np.concatenate(base)
    rng = np.random.default_rng(seed)
    total = n + ARTICLE_ROWS * 64
    folder.mkdir(parents=True, exist_ok=True)
    pieces, row_lengths = [], []
    for first in range(0, total, 100_000):
        m = min(100_000, total - first)
        a, b = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        ids, row_len = recombine(flat, starts, lengths, a, b)
        pieces.append(ids)
        row_lengths.append(row_len)
    ids = np.concatenate(pieces)
    offsets = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(np.concatenate(row_lengths), out=offsets[1:])
    np.save(folder / "ids.npy", ids)
    np.save(folder / "offsets.npy", offsets)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    print(
        f"{n:,} synthetic passages ({ids.size / total:.0f} tokens each) in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    sys.path.insert(0, str(ROOT))
    from inews import articles

    from qa.config import load_settings
    from qa.engine import Engine

    engine = Engine(load_settings(model={"name": "fake:384"}))
    pool = [t for t, c in articles() if t.strip() and len(c.strip()) >= 50]
    titles = random.Random(seed).sample(pool, queries)
    tokens = [list(engine.queries.build(t).tokens) for t in titles]
    (folder / "queries.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    return folder


# -- engines ---------------------------------------------------------------------------------------


def fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _field_norms() -> np.ndarray:
    """tantivy's FIELD_NORMS_TABLE (src/fieldnorm/code.rs): lengths 0-40 exactly, then 8 steps of 2, 8 of 4,
    8 of 8 and so on; a row's length is stored as the largest entry not above it."""
    values, step = list(range(41)), 2
    while len(values) < 256:
        values += [values[-1] + step * (i + 1) for i in range(8)]
        step *= 2
    return np.asarray(values[:256], dtype=np.float64)


FIELD_NORMS = _field_norms()
LEAN_ABOVE = 200_000  # ours is built by lean_postings above this many passages


def lean_postings(corpus: Corpus, n: int) -> Postings:
    """``Postings.build`` of the first n rows, from the token ids rather than lists of strings.

    The same arrays (terms in hash order, rows ascending, term frequencies); peak memory about 5 GB at 1M
    passages instead of ~11 GB (extrapolated from 20k and 75k): the lists of strings and the temporaries
    of ``np.unique`` are what ``Postings.build`` needs besides.
    """
    from qa.text.terms import encode_term, term_hash

    ids = np.asarray(corpus.ids[: corpus.offsets[n]])
    counts = np.diff(corpus.offsets[: n + 1])
    used = np.flatnonzero(np.bincount(ids, minlength=len(corpus.vocab)))
    encoded = [encode_term(corpus.vocab[i]) for i in used.tolist()]
    hashes = np.fromiter((term_hash(t) for t in encoded), dtype=np.uint64, count=len(encoded))
    order = np.argsort(hashes, kind="stable")
    term_of = np.full(len(corpus.vocab), -1, dtype=np.int64)
    term_of[used[order]] = np.arange(order.size)
    key = term_of[ids]  # one int64 per token: term * n + row, sorted in place
    del ids
    key *= max(n, 1)
    done = 0
    for first in range(0, n, 100_000):
        last = min(n, first + 100_000)
        size = int(corpus.offsets[last] - corpus.offsets[first])
        key[done : done + size] += np.repeat(np.arange(first, last, dtype=np.int64), counts[first:last])
        done += size
    key.sort()
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    tf = np.diff(np.append(starts, key.size)).astype(np.int32)
    pairs = key[starts]
    del key, starts
    return Postings.from_pairs(pairs, tf, counts, [encoded[i] for i in order.tolist()], hashes[order])


class Ours:
    """The service's BM25: one big segment, and for writes more small segments and tombstones."""

    name = "ours"

    def __init__(self, folder: Path, corpus: Corpus) -> None:
        self.folder = folder
        self.corpus = corpus
        self.big: Postings | None = None
        self.small: list[Postings] = []
        self.live: np.ndarray | None = None
        self.lexical: SegmentedBM25 | None = None

    def build(self) -> None:
        n = self.corpus.n
        if n <= LEAN_ABOVE:
            postings = Postings.build(self.corpus.token_lists(0, n))
            if n >= 50_000:  # the lean builder gives the same arrays (checked where both fit)
                lean = lean_postings(self.corpus, n)._arrays()
                assert all(np.array_equal(a, lean[k]) for k, a in postings._arrays().items())
        else:
            postings = lean_postings(self.corpus, n)
        postings.save(self.folder / "s-0")
        fsync_tree(self.folder)

    def open(self) -> None:
        self.big = Postings.load(self.folder / "s-0")
        self.lexical = SegmentedBM25([(self.big, None)])

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        assert self.lexical is not None
        return self.lexical.search(tokens, k)

    def scores(self, tokens: Sequence[str], k1: float = 1.5, quantised: bool = False) -> np.ndarray:
        """Our BM25 of every row; ``quantised``: with each row's length as tantivy stores it (one byte)."""
        assert self.big is not None
        lexical = SegmentedBM25([(self.big, None)], k1=k1)
        if quantised:
            lengths = self.big.lengths
            avgdl = float(lengths.sum(dtype=np.int64)) / lengths.size  # tantivy's mean is of raw lengths
            stored = FIELD_NORMS[np.searchsorted(FIELD_NORMS, lengths, side="right") - 1]
            lexical._norms[:-1] = k1 * ((1 - 0.75) + 0.75 * stored / avgdl)
        return lexical.scores(tokens)

    def write(self, add: range, delete: range, sample: int) -> None:
        assert self.big is not None
        folder = self.folder / f"w-{sample}"
        shutil.rmtree(folder, ignore_errors=True)
        Postings.build(self.corpus.token_lists(add.start, add.stop)).save(folder)
        fsync_tree(folder)
        self.small.append(Postings.load(folder))
        live = np.ones(len(self.big), dtype=bool) if self.live is None else self.live.copy()
        live[delete.start : delete.stop] = False
        self.live = live
        # The service's snapshot: the big segment with its tombstones, then every small segment.
        self.lexical = SegmentedBM25([(self.big, live), *[(p, None) for p in self.small]])

    def row_of_written(self, hit: int, sample_rows: list[range]) -> int:
        """Global row of the service's numbering → corpus row (for checking writes)."""
        assert self.live is not None
        live_rows = int(self.live.sum())
        if hit < live_rows:
            return int(np.flatnonzero(self.live)[hit])
        k, j = divmod(hit - live_rows, ARTICLE_ROWS)
        return sample_rows[k].start + j


class Tantivy:
    name = "tantivy"

    def __init__(self, folder: Path, corpus: Corpus) -> None:
        import tantivy

        self.t = tantivy
        self.folder = folder
        self.corpus = corpus
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("text", tokenizer_name="whitespace", index_option="freq")
        builder.add_integer_field("row", fast=True)
        builder.add_integer_field("article", indexed=True)
        self.schema = builder.build()
        self.index: Any = None
        self.searcher: Any = None
        self.writer: Any = None

    def _doc(self, row: int, text: str) -> Any:
        return self.t.Document(text=text, row=row, article=row // ARTICLE_ROWS)

    def build(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        index = self.t.Index(self.schema, path=str(self.folder), reuse=False)
        writer = index.writer(heap_size=512_000_000, num_threads=1)
        for row, text in self.corpus.texts(0, self.corpus.n):
            writer.add_document(self._doc(row, text))
        writer.commit()
        writer.wait_merging_threads()

    def open(self) -> None:
        self.index = self.t.Index.open(str(self.folder))
        self.searcher = self.index.searcher()

    def _query(self, tokens: Sequence[str]) -> Any:
        # Each occurrence of a token is a clause: scores add up per occurrence, as in ours.
        should = self.t.Occur.Should
        return self.t.Query.boolean_query(
            [(should, self.t.Query.term_query(self.schema, "text", tok)) for tok in tokens]
        )

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        if not tokens:
            return []
        hits = self.searcher.search(self._query(tokens), k, count=False).hits
        rows = self.searcher.fast_field_values("row", [address for _, address in hits])
        return [(int(r), float(s)) for r, (s, _) in zip(rows, hits, strict=True)]

    def write(self, add: range, delete: range, sample: int) -> None:
        if self.writer is None:
            self.writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        for row, text in self.corpus.texts(add.start, add.stop):
            self.writer.add_document(self._doc(row, text))
        self.writer.delete_documents_by_term("article", delete.start // ARTICLE_ROWS)
        self.writer.commit()
        self.index.reload()
        self.searcher = self.index.searcher()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.wait_merging_threads()
            self.writer = None


class Fts5:
    name = "fts5"

    def __init__(self, folder: Path, corpus: Corpus) -> None:
        self.folder = folder
        self.path = folder / "fts5.db"
        self.corpus = corpus
        self.db: sqlite3.Connection | None = None

    def _tokenize(self) -> str:
        # Every non-alphanumeric character a token holds is a token character: only spaces separate.
        chars = sorted({c for token in self.corpus.vocab for c in token if not c.isalnum() and c != " "})
        tokenchars = "".join(chars).replace("'", "''")
        return f"unicode61 remove_diacritics 0 tokenchars '{tokenchars}'"

    def build(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        tokenize = self._tokenize().replace('"', '""')
        db.execute(f'CREATE VIRTUAL TABLE p USING fts5(text, tokenize="{tokenize}")')
        with db:
            db.executemany("INSERT INTO p(rowid, text) VALUES (?, ?)", self.corpus.texts(0, self.corpus.n))
        with db:
            db.execute("INSERT INTO p(p) VALUES ('optimize')")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()

    def open(self) -> None:
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")

    @staticmethod
    def _match(tokens: Sequence[str]) -> str:
        return " OR ".join('"' + t.replace('"', '""') + '"' for t in tokens)

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        assert self.db is not None
        if not tokens:
            return []
        rows = self.db.execute(
            "SELECT rowid, bm25(p) FROM p WHERE p MATCH ? ORDER BY bm25(p) LIMIT ?", (self._match(tokens), k)
        ).fetchall()
        return [(int(r), -float(s)) for r, s in rows]  # bm25() is lower-is-better

    def write(self, add: range, delete: range, sample: int) -> None:
        assert self.db is not None
        with self.db:
            self.db.executemany(
                "INSERT INTO p(rowid, text) VALUES (?, ?)", self.corpus.texts(add.start, add.stop)
            )
            self.db.execute("DELETE FROM p WHERE rowid >= ? AND rowid < ?", (delete.start, delete.stop))


class Bm25s:
    """bm25s, as the service used it before segments: its default (Lucene) BM25, memory-mapped on load."""

    name = "bm25s"

    def __init__(self, folder: Path, corpus: Corpus) -> None:
        self.folder = folder
        self.corpus = corpus
        self.retriever: Any = None

    def build(self) -> None:
        import bm25s
        from bm25s.tokenization import Tokenized

        vocab = {t: i for i, t in enumerate(self.corpus.vocab)}
        c = self.corpus
        ids = [c.row_ids(i).tolist() for i in range(c.n)]
        retriever = bm25s.BM25()
        retriever.index(Tokenized(ids=ids, vocab=vocab), show_progress=False)
        del ids
        retriever.save(str(self.folder))

    def open(self) -> None:
        import bm25s

        self.retriever = bm25s.BM25.load(str(self.folder), mmap=True)

    def search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        vocab = self.retriever.vocab_dict
        known = [t for t in tokens if t in vocab]
        if not known:
            return []
        scores = np.asarray(self.retriever.get_scores(known), dtype=np.float32)
        rows = np.flatnonzero(scores > 0)
        if rows.size > k:
            rows = rows[np.argpartition(-scores[rows], k - 1)[:k]]
        order = rows[np.argsort(-scores[rows], kind="stable")]
        return [(int(r), float(scores[r])) for r in order]

    def write(self, add: range, delete: range, sample: int) -> None:
        raise NotImplementedError("bm25s has no incremental write: a write is a rebuild")


CLASSES = {"ours": Ours, "tantivy": Tantivy, "fts5": Fts5, "bm25s": Bm25s}


def engine(name: str, work: Path, corpus: Corpus) -> Any:
    return CLASSES[name](work / name, corpus)


# -- measurements ----------------------------------------------------------------------------------


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 1e6


def status_mb() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    return {
        key: int(m[1]) / 1024
        for key in ("RssAnon", "RssFile", "VmHWM")
        if (m := re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE))
    }


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def child_build(name: str, work: Path, corpus: Corpus) -> dict[str, Any]:
    e = engine(name, work, corpus)
    shutil.rmtree(e.folder, ignore_errors=True)
    e.folder.mkdir(parents=True)
    t0 = time.perf_counter()
    e.build()
    seconds = time.perf_counter() - t0
    return {"build_s": seconds, "disk_mb": disk_mb(e.folder), "build_peak_rss_mb": status_mb()["VmHWM"]}


def child_memory(name: str, work: Path, corpus: Corpus) -> dict[str, Any]:
    queries = corpus.queries
    gc.collect()
    before, base = rss_mb(), status_mb()
    e = engine(name, work, corpus)
    e.open()
    e.search(queries[0], TOP)
    opened = rss_mb() - before
    for tokens in queries:
        e.search(tokens, TOP)
    after = status_mb()
    return {
        "rss_open_mb": opened,
        "rss_after_queries_mb": rss_mb() - before,
        # what opening and querying added, anonymous memory vs pages of mapped files (the kernel can drop)
        "anon_after_queries_mb": after["RssAnon"] - base["RssAnon"],
        "file_after_queries_mb": after["RssFile"] - base["RssFile"],
    }


def run_child(kind: str, name: str, work: Path, corpus_dir: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, name, "--work", str(work), "--corpus", str(corpus_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} {name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def overlap(ours: list[tuple[int, float]], other: list[tuple[int, float]], k: int = 10) -> float:
    mine = {r for r, _ in ours[:k]}
    return len(mine & {r for r, _ in other[:k]}) / max(1, min(k, len(mine)))


def tie_overlap(scores: np.ndarray, ours: list[tuple[int, float]], other: list[tuple[int, float]]) -> float:
    """The share of the engine's top 10 that our scoring ranks as good as our 10th hit (ties count)."""
    if not ours:
        return 1.0 if not other else 0.0
    kth = ours[:10][-1][1]
    top = [r for r, _ in other[:10] if r < scores.size]
    return sum(float(scores[r]) >= kth * (1 - 1e-6) for r in top) / max(1, min(10, len(ours)))


def compare(names: list[str], work: Path, corpus: Corpus, writes: int) -> dict[str, Any]:
    # The writes go to a copy, so that the built indexes stay as built (--reuse measures them again).
    copies = work / "written"
    shutil.rmtree(copies, ignore_errors=True)
    for name in names:
        if name in ("tantivy", "fts5"):
            shutil.copytree(work / name, copies / name)
    engines = {name: engine(name, copies if (copies / name).exists() else work, corpus) for name in names}
    for e in engines.values():
        e.open()
    queries = corpus.queries
    lat: dict[str, list[float]] = {name: [] for name in names}
    top: dict[str, list[list[tuple[int, float]]]] = {name: [] for name in names}
    for tokens in queries:  # warm every engine once
        for e in engines.values():
            e.search(tokens, TOP)
    for rnd in range(2):
        for tokens in queries:
            for name, e in engines.items():
                t = time.perf_counter()
                hits = e.search(tokens, TOP)
                lat[name].append(time.perf_counter() - t)
                if rnd == 0:
                    top[name].append(hits)
    res: dict[str, Any] = {
        name: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "p99_ms": pct(v, 99)} for name, v in lat.items()
    }
    ours = engines["ours"]
    for name in names:
        if name == "ours":
            continue
        exact, ties, ties12, modelled = [], [], [], []
        for tokens, mine, theirs in zip(queries, top["ours"], top[name], strict=True):
            exact.append(overlap(mine, theirs))
            ties.append(tie_overlap(ours.scores(tokens), mine, theirs))
            # The same scoring with the engine's k1 (1.2 in tantivy and FTS5): what is left is theirs.
            scores12 = ours.scores(tokens, k1=1.2)
            order = np.argsort(-scores12, kind="stable")[:10]
            mine12 = [(int(r), float(scores12[r])) for r in order if scores12[r] > 0]
            ties12.append(tie_overlap(scores12, mine12, theirs))
            if name == "tantivy":  # and with its one-byte lengths: what is left is the engine itself
                scores_t = ours.scores(tokens, k1=1.2, quantised=True)
                order = np.argsort(-scores_t, kind="stable")[:10]
                mine_t = [(int(r), float(scores_t[r])) for r in order if scores_t[r] > 0]
                modelled.append(tie_overlap(scores_t, mine_t, theirs))
        res[name] |= {
            "overlap@10": statistics.mean(exact),
            "overlap@10_ties": statistics.mean(ties),
            "overlap@10_ties_k1_1.2": statistics.mean(ties12),
        }
        if modelled:
            res[name]["overlap@10_ties_k1_1.2_quantised"] = statistics.mean(modelled)

    # One write per engine per sample, interleaved: add the sample's new article, delete article `sample`.
    write_s: dict[str, list[float]] = {name: [] for name in names if name != "bm25s"}
    added: list[range] = []
    for sample in range(writes):
        add, delete = corpus.new_article(sample), range(sample * ARTICLE_ROWS, (sample + 1) * ARTICLE_ROWS)
        added.append(add)
        probe_add, probe_del = corpus.tokens(add.start), corpus.tokens(delete.start)
        for name in write_s:
            e = engines[name]
            t = time.perf_counter()
            e.write(add, delete, sample)
            write_s[name].append(time.perf_counter() - t)
            found = [r for r, _ in e.search(probe_add, 10)]
            gone = [r for r, _ in e.search(probe_del, 100)]
            if name == "ours":
                found = [e.row_of_written(r, added) for r in found]
                gone = [e.row_of_written(r, added) for r in gone]
            assert add.start in found, f"{name}: the added article is not found"
            assert not set(gone) & set(delete), f"{name}: the deleted article is still found"
    for name, values in write_s.items():
        res[name] |= {"write_s": statistics.median(values), "write_max_s": max(values)}
    for e in engines.values():
        if hasattr(e, "close"):
            e.close()
    return res


def table(res: dict[str, Any]) -> str:
    head = (
        "| engine | build | on disk | RSS added: open / after queries (anon + file pages) | "
        "top-100 p50 / p95 / p99 | one write (add 10 + delete 10) | overlap@10 with ours: exact / ties "
        "/ ties at k1 1.2 |"
    )
    rows = [head, "|---|---|---|---|---|---|---|"]
    for name, r in res["engines"].items():
        write = f"{r['write_s'] * 1000:.0f} ms" if "write_s" in r else f"rebuild {r['build_s']:.0f} s"
        agree = "—"
        if name != "ours":
            agree = f"{r['overlap@10']:.3f} / {r['overlap@10_ties']:.3f} / {r['overlap@10_ties_k1_1.2']:.3f}"
            if "overlap@10_ties_k1_1.2_quantised" in r:
                agree += f" (and its 1-byte lengths: {r['overlap@10_ties_k1_1.2_quantised']:.3f})"
        rows.append(
            f"| {name} | {r['build_s']:.0f} s | {r['disk_mb']:.0f} MB | {r['rss_open_mb']:.0f} / "
            f"{r['rss_after_queries_mb']:.0f} MB ({r['anon_after_queries_mb']:.0f} + "
            f"{r['file_after_queries_mb']:.0f}) | {r['p50_ms']:.1f} / {r['p95_ms']:.1f} / {r['p99_ms']:.1f} ms | "
            f"{write} | {agree} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--writes", type=int, default=5, help="write samples per engine")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--reuse", action="store_true", help="measure the indexes of an earlier run again")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        kind, name = args.child
        corpus = Corpus(args.corpus)
        out = (child_build if kind == "build" else child_memory)(name, args.work, corpus)
        print(json.dumps(out))
        return
    n = args.passages
    names = [e for e in args.engines.split(",") if e]
    assert names[0] == "ours", "ours comes first: the others are compared with it"
    corpus_dir = make_corpus(n, args.queries, args.seed)
    work = CACHE / f"engines-{n}"
    res: dict[str, Any] = {"passages": n, "queries": args.queries, "date": time.strftime("%Y-%m-%d")}
    built: dict[str, Any] = {}
    previous = work / "build.json"
    if args.reuse and previous.exists():
        built = json.loads(previous.read_text())
    for name in names:
        if name not in built:
            built[name] = run_child("build", name, work, corpus_dir)
            work.mkdir(parents=True, exist_ok=True)
            previous.write_text(json.dumps(built))
        print(f"{name}: built {json.dumps(built[name])}", flush=True)
    engines: dict[str, Any] = {}
    for name in names:
        engines[name] = built[name] | run_child("memory", name, work, corpus_dir)
        print(f"{name}: memory {json.dumps(engines[name])}", flush=True)
    corpus = Corpus(corpus_dir)
    res["tokens_per_passage"] = float(corpus.offsets[corpus.n] / corpus.n)
    res["vocabulary"] = len(corpus.vocab)
    for name, r in compare(names, work, corpus, args.writes).items():
        engines[name] |= r
    res["engines"] = engines
    text = table(res)
    print(f"\n{n:,} passages ({res['tokens_per_passage']:.0f} tokens each), {args.queries} title queries\n")
    print(text)
    out = args.out or ROOT / "results" / f"lexical_engines_{n}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1), encoding="utf-8")
    out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
