"""Passage encoding speed of every precision, and dense retrieval quality of fp32 against the fast path.

    python benchmarks/encode_speed.py [--sample 128] [--rounds 5] [--quality-articles 1000] [--out FILE]

Speed: the same sample of real inews passages (chunked like the service, "passage: " prefix) is encoded
by every variant in turn, several rounds, interleaved so that each round sees the same machine load;
the table gives the median passages/s and the median of the per-round ratios to fp32.

Quality: the first N articles of the retrieval benchmark's selection (benchmarks/retrieval_inews.py,
seed 13, first 1,000 characters) are indexed with fp32 and with int8 in the same run, each title is asked
as a question, and dense-only retrieval is scored (MRR@10, R@1): the article is found at the rank of its
first passage. Indexing time (whole build) is reported for both.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from inews import articles
from retrieval_inews import corpus_file, ranks

from qa.config import Settings, load_settings
from qa.embeddings.encoder import Encoder, SentenceTransformerEncoder
from qa.embeddings.models import FP32, INT8, ensure_model
from qa.embeddings.onnx_encoder import OnnxEncoder, cpu_flags
from qa.engine import Engine
from qa.index.search_index import passage_text
from qa.ingest.chunker import chunk_article
from qa.ingest.loader import load_corpus

ROOT = Path(__file__).resolve().parent
Encode = Callable[[Sequence[str]], Any]


def pick(count: int, seed: int) -> list[tuple[int, str, str]]:
    """The retrieval benchmark's selection of 3,000 articles, in its order."""
    pool = [(i, t, c) for i, (t, c) in enumerate(articles()) if t.strip() and len(c.strip()) >= 50]
    return sorted(random.Random(seed).sample(pool, count))


def encoders(settings: Settings) -> dict[str, Encoder]:
    m = settings.model
    common: dict[str, Any] = {
        "name": m.name,
        "query_prefix": m.query_prefix,
        "passage_prefix": m.passage_prefix,
        "batch_size": m.batch_size,
        "max_seq_length": m.max_seq_length,
    }
    fp32 = ensure_model(m.name, settings.model_cache_dir, FP32)
    int8 = ensure_model(m.name, settings.model_cache_dir, INT8)
    return {
        FP32: SentenceTransformerEncoder(fp32, **common),
        INT8: OnnxEncoder(int8, threads=m.threads, **common),
    }


def variants(settings: Settings, fast: dict[str, Encoder]) -> dict[str, Encode]:
    """Every way of encoding passages that was considered; the first two are the service's."""
    import torch
    from sentence_transformers import SentenceTransformer

    fp32, int8 = fast[FP32], fast[INT8]
    folder = ensure_model(settings.model.name, settings.model_cache_dir, FP32)
    prefix = settings.model.passage_prefix
    bs = settings.model.batch_size
    torch_int8 = SentenceTransformer(folder, device="cpu")
    torch_int8[0].model = torch.ao.quantization.quantize_dynamic(
        torch_int8[0].model, {torch.nn.Linear}, dtype=torch.qint8
    )
    one_thread = OnnxEncoder(
        ensure_model(settings.model.name, settings.model_cache_dir, INT8),
        name="int8-1-thread",
        passage_prefix=prefix,
        batch_size=bs,
        threads=1,
    )

    def bf16(texts: Sequence[str]) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fp32.encode_passages(texts)

    def torch_dynamic(texts: Sequence[str]) -> Any:
        return torch_int8.encode([prefix + t for t in texts], batch_size=bs, normalize_embeddings=True)

    return {
        "fp32 (sentence-transformers)": fp32.encode_passages,
        "int8 onnxruntime (auto)": int8.encode_passages,
        "int8 onnxruntime, 1 thread": one_thread.encode_passages,
        "int8 torch dynamic Linear": torch_dynamic,
        "bf16 autocast": bf16,
    }


def speed(runs: dict[str, Encode], texts: list[str], rounds: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {k: [] for k in runs}
    cosine: dict[str, float] = {}
    reference = np.asarray(next(iter(runs.values()))(texts[:32]))
    for k, run in runs.items():  # warm-up, and agreement with fp32 on 32 passages
        cosine[k] = float(np.mean(np.sum(np.asarray(run(texts[:32])) * reference, axis=1)))
    for r in range(rounds):
        for k, run in runs.items():
            t0 = time.perf_counter()
            run(texts)
            rates[k].append(len(texts) / (time.perf_counter() - t0))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{v[-1]:.1f}" for v in rates.values()))
    base = rates[next(iter(runs))]
    out: dict[str, Any] = {}
    print(f"\n{'variant':30s} {'passages/s':>10s} {'ratio':>6s} {'cos vs fp32':>11s}")
    for k, v in rates.items():
        ratio = statistics.median(x / b for x, b in zip(v, base, strict=True))
        out[k] = {"median_per_s": round(statistics.median(v), 2), "ratio": round(ratio, 2)}
        out[k] |= {"rounds_per_s": [round(x, 2) for x in v], "mean_cosine_vs_fp32": round(cosine[k], 5)}
        print(f"{k:30s} {statistics.median(v):10.1f} {ratio:6.2f} {cosine[k]:11.5f}")
    return out


def quality(
    settings: Settings, fast: dict[str, Encoder], picked: list[tuple[int, str, str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="encode-quality-") as tmp:
        corpus_file(Path(tmp) / "corpus", picked, 1000)
        for precision, encoder in fast.items():
            index_settings = load_settings(
                corpus={"dir": str(Path(tmp) / "corpus")},
                index={"dir": str(Path(tmp) / f"index-{precision}"), "show_progress": True},
                model={"precision": precision},
                retrieval={"candidates": 100},
            )
            engine = Engine(index_settings, encoder=encoder)
            t0 = time.perf_counter()
            report = engine.build()
            seconds = time.perf_counter() - t0
            found: list[int | None] = []
            for i, title, _content in picked:
                docs = ranks(engine, title, "dense", depth=index_settings.retrieval.rerank_depth)
                found.append(docs.index(f"inews-{i}") + 1 if f"inews-{i}" in docs else None)
            n = len(found)
            out[precision] = {
                "MRR@10": round(sum(1 / x for x in found if x and x <= 10) / n, 4),
                "R@1": round(sum(1 for x in found if x == 1) / n, 4),
                "passages": report.passages,
                "index_seconds": round(seconds, 1),
                "index_passages_per_s": round(report.passages / seconds, 2),
            }
            print(f"  {precision}: {out[precision]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=128, help="passages encoded per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quality-articles", type=int, default=1000, help="0 = skip the quality run")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "encode_speed.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    settings = load_settings()
    picked = pick(3000, args.seed)
    with tempfile.TemporaryDirectory(prefix="encode-sample-") as tmp:
        corpus_file(Path(tmp), picked, 1000)
        corpus = load_corpus(Path(tmp), ["*.jsonl"], 10**9)
    texts = [
        passage_text(chunk, article.title)
        for article in corpus.articles
        for chunk in chunk_article(article, **settings.chunking.kwargs())
    ]
    texts = random.Random(args.seed).sample(texts, args.sample)
    flags = sorted(f for f in cpu_flags() if "vnni" in f or "bf16" in f or "amx" in f)
    results: dict[str, Any] = {"sample_passages": len(texts), "rounds": args.rounds, "cpu_flags": flags}
    print(f"speed: {len(texts)} inews passages, {args.rounds} interleaved rounds; CPU flags: {flags}")
    fast = encoders(settings)
    results["speed"] = speed(variants(settings, fast), texts, args.rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")

    if args.quality_articles:
        subset = picked[: args.quality_articles]
        results["quality_subset"] = (
            f"first {len(subset)} of the {len(picked)} articles of retrieval_inews (seed {args.seed}), "
            "first 1000 characters; titles as questions; dense only"
        )
        print(f"\nquality: {results['quality_subset']}")
        results["quality"] = quality(settings, fast, subset)
        print(f"\n{'precision':10s} {'MRR@10':>7s} {'R@1':>7s} {'index passages/s':>17s}")
        for precision, row in results["quality"].items():
            print(
                f"{precision:10s} {row['MRR@10']:7.4f} {row['R@1']:7.4f} {row['index_passages_per_s']:17.1f}"
            )
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
