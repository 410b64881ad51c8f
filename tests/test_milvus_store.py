"""The Milvus store on its own (Milvus Lite): filter expressions, BM25 with the Chinese analyzer, hybrid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from qa.embeddings.milvus_store import MilvusStore, MilvusStoreError, Passage, filter_expr

pytest.importorskip("pymilvus")

TRICKY = 'q"] or doc_id != "\\x'
PASSAGES = [
    Passage("k0", "d0", "2025-01-21", "body", 0, 10, "越南和中国的贸易额达到新高"),
    Passage("k1", "d1", "", "body", 0, 12, "广西壮族自治区党委书记会见越南代表团"),
    Passage("k2", TRICKY, "2023-12-11", "related", 5, 20, "胡志明市与上海举行合作会议"),
]
VECTORS = np.eye(3, 4, dtype=np.float32)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MilvusStore]:
    with MilvusStore(str(tmp_path / "m.db"), "passages", 4) as store:
        store.upsert(PASSAGES, VECTORS)
        yield store


def test_filter_expressions_quote_values() -> None:
    assert filter_expr() == ""
    assert filter_expr(["b", "a"]) == 'doc_id in ["a", "b"]'
    assert filter_expr(date_to="2024-01-01") == 'date != "" and date <= "2024-01-01"'
    assert filter_expr([TRICKY]) == 'doc_id in ["q\\"] or doc_id != \\"\\\\x"]'


def test_search_filters_vectors_and_deletes(store: MilvusStore) -> None:
    assert store.count() == 3 and sorted(store.keys()) == ["k0", "k1", "k2"]
    assert store.dense_search(VECTORS[:1], 3)[0][0] == ("k0", pytest.approx(1.0))
    assert store.lexical_search(["广西党委书记是谁"], 3)[0][0][0] == "k1"
    assert [k for k, _ in store.dense_search(VECTORS[:1], 3, filter_expr([TRICKY]))[0]] == ["k2"]
    dated = store.dense_search(VECTORS[:1], 3, filter_expr(date_from="2024-01-01"))[0]
    assert [k for k, _ in dated] == ["k0"]  # k1 has no date
    fused, vectors = store.hybrid_search([(VECTORS[2], 3), ("上海合作会议", 3)], 3, rrf_k=60)
    assert fused[0][0] == "k2"
    np.testing.assert_allclose(vectors["k2"], VECTORS[2])
    np.testing.assert_allclose(store.vectors(["k1"])["k1"], VECTORS[1])
    store.delete(["k0"])
    store.delete_docs([TRICKY])
    assert sorted(store.keys()) == ["k1"]


def test_a_collection_of_another_dimension_is_refused(store: MilvusStore) -> None:
    with pytest.raises(MilvusStoreError, match="dimensional"):
        MilvusStore(store.uri, store.collection, 8)
    assert store.count() == 3  # the shared connection survives the refused one
