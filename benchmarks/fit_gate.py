"""Fit the answer gate on labelled questions and write it to qa/data/gate.json.

    python benchmarks/fit_gate.py [--sets train] [--false-abstentions 0.03] [--out qa/data/gate.json]

For every question of the sets (train articles 2,000–3,999 only), the service with the learned ranker
ranks its candidates and ``gate_features`` describes the best one. The label is whether the question is
answerable: the gate must not learn to abstain where the best passage is merely the wrong one (that is
the ranker's to fix). A logistic model is fitted (features standardised inside the fit, weights written
in raw units); the threshold is the highest probability that abstains on at most ``--false-abstentions``
of the answerable questions whose best passage holds the answer, chosen on 5-fold out-of-fold
probabilities so that it is not fitted to itself.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from quality import ROOT, eval_sets, history_of, nfkc, open_engine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from qa.retrieval.gate import GATE_FEATURES, gate_features
from qa.retrieval.rerank import FEATURES


def collect(set_names: list[str], depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Features, answerable?, best passage holds the answer?, ids."""
    xs, answerable, correct, ids = [], [], [], []
    sets = eval_sets()
    for name in set_names:
        s = sets[name]
        engine = open_engine(s, {"retrieval": {"ranker": "learned", "abstention": "rules"}}, build=False)
        snap = engine.indexing.current()
        g = snap.grounding
        for rec in s.records():
            answers = [nfkc(a) for a in rec.get("answers") or []]
            query = snap.expand(
                engine.queries.build(rec["question"], history_of(rec)), engine.queries.translated
            )
            candidates = snap.reranker.rerank(query, snap.searcher.search(query, depth))
            candidates = snap.searcher.body_before_teaser(candidates)[:10]
            if not candidates:
                continue
            best = candidates[0]
            novel = bool(g.novel_words(query)) if query.chinese else False
            x = gate_features(
                snap.index, query, candidates, g._context(best.row), g.missing(query, best.row), novel
            )
            chunk = snap.index.chunks[best.row]
            xs.append(x)
            answerable.append(bool(answers))
            correct.append(
                bool(answers) and chunk.doc_id == rec["doc"] and any(a in nfkc(chunk.text) for a in answers)
            )
            ids.append(str(rec["id"]))
    return np.array(xs), np.array(answerable), np.array(correct), ids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="train")
    p.add_argument("--depth", type=int, default=30)
    p.add_argument("--false-abstentions", type=float, default=0.03)
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=ROOT / "qa" / "data" / "gate.json")
    args = p.parse_args()
    started = time.perf_counter()
    x, answerable, correct, _ids = collect(args.sets.split(","), args.depth)
    print(
        f"{len(x)} questions: {answerable.sum()} answerable ({correct.sum()} with the answer first), "
        f"{(~answerable).sum()} unanswerable ({time.perf_counter() - started:.0f} s)"
    )
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / std
    y = answerable.astype(int)
    oof = np.zeros(len(x))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(z, y):
        model = LogisticRegression(C=args.C, max_iter=2000, class_weight="balanced").fit(z[train], y[train])
        oof[test] = model.predict_proba(z[test])[:, 1]
    positives = np.sort(oof[correct])
    allowed = int(np.floor(args.false_abstentions * len(positives)))
    threshold = float(positives[allowed]) if len(positives) else 0.5
    fa = int((oof[answerable] < threshold).sum())
    ab = int((oof[~answerable] < threshold).sum())
    print(
        f"out-of-fold at threshold {threshold:.3f}: false abstentions {fa}/{answerable.sum()}, "
        f"unanswerable abstained {ab}/{(~answerable).sum()}"
    )
    for t in (0.2, 0.3, 0.4, 0.5, 0.6):
        print(
            f"  threshold {t:.1f}: false abstentions {(oof[answerable] < t).sum()}, abstained {(oof[~answerable] < t).sum()}"
        )
    model = LogisticRegression(C=args.C, max_iter=2000, class_weight="balanced").fit(z, y)
    weights = model.coef_[0] / std
    bias = float(model.intercept_[0] - (model.coef_[0] * mean / std).sum())
    for name, w in zip(GATE_FEATURES, model.coef_[0], strict=True):
        print(f"  {name:<15} {w:+.3f} (standardised)")
    record = {
        "features": list(GATE_FEATURES),
        "ranker_features": list(FEATURES),
        "weights": [round(float(w), 6) for w in weights],
        "bias": round(bias, 6),
        "threshold": round(threshold, 4),
        "fitted_on": {
            "sets": args.sets,
            "questions": len(x),
            "C": args.C,
            "false_abstention_target": args.false_abstentions,
            "oof_false_abstentions": fa,
            "oof_abstained": ab,
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    args.out.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
