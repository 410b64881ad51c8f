"""The store factory: exact Flat for small corpora, HNSW above the threshold; recall, filters, files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from qa.config import load_settings
from qa.embeddings.ann import F16_FILE, HNSW_FILE, STORE_FILE, HnswStore
from qa.embeddings.vector_store import FaissFlatStore, StoreParams, build_store, load_store

DIM = 32
ANN = StoreParams(flat_max_passages=100)  # the configured HNSW parameters, a tiny threshold


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM))
    x = centres[rng.integers(0, 40, n)] + 0.5 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall(truth: list[list[tuple[int, float]]], got: list[list[tuple[int, float]]]) -> float:
    return float(
        np.mean(
            [len({r for r, _ in t} & {r for r, _ in g}) / len(t) for t, g in zip(truth, got, strict=True)]
        )
    )


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore]:
    x = clustered(4000)
    q = clustered(100, seed=1)
    flat, ann = build_store(x, DIM), build_store(x, DIM, ANN)
    assert isinstance(flat, FaissFlatStore) and isinstance(ann, HnswStore)
    return x, q, flat, ann


def test_factory_picks_by_size() -> None:
    x = clustered(200)
    assert isinstance(build_store(x[:100], DIM, ANN), FaissFlatStore)
    assert isinstance(build_store(x, DIM, ANN), HnswStore)
    assert isinstance(build_store(x, DIM), FaissFlatStore)  # default threshold: 200k


def test_settings_reach_the_params() -> None:
    p = load_settings(vector_store={"backend": "faiss", "flat_max_passages": 7, "hnsw_ef_search": 99})
    params = p.vector_store.store_params()
    assert params.flat_max_passages == 7 and params.hnsw.ef_search == 99


def test_recall_against_flat(data: tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore]) -> None:
    _, q, flat, ann = data
    assert recall(flat.search(q, 10), ann.search(q, 10)) >= 0.98


@pytest.mark.parametrize("exact_rows", [0, 50_000], ids=["graph-with-selector", "exact-fallback"])
@pytest.mark.parametrize("share", [0.3, 0.01])
def test_filters(
    data: tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore], exact_rows: int, share: float
) -> None:
    _, q, flat, ann = data
    ann.params = replace(ANN.hnsw, exact_filter_rows=exact_rows)
    try:
        allowed = np.random.default_rng(2).random(len(flat)) < share
        got = ann.search(q, 10, allowed)
        assert all(allowed[r] for hits in got for r, _ in hits)
        assert all(len(hits) == min(10, int(allowed.sum())) for hits in got)
        assert recall(flat.search(q, 10, allowed), got) >= 0.95
        assert ann.search(q, 10, np.zeros(len(flat), bool)) == [[] for _ in q]
    finally:
        ann.params = ANN.hnsw


def test_vectors_are_what_was_added(data: tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore]) -> None:
    x, _, _, ann = data
    rows = [0, 17, 3999, 17]
    got = ann.vectors(rows)
    assert got.dtype == np.float32 and np.allclose(got, x[rows], atol=1e-3)


def test_scores_are_inner_products(data: tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore]) -> None:
    x, q, _, ann = data
    hits = ann.search(q[:1], 5)[0]
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert np.allclose([s for _, s in hits], x[[r for r, _ in hits]] @ q[0], atol=2e-3)


def test_save_load_round_trip(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore]
) -> None:
    x, q, flat, ann = data
    ann.save(tmp_path / "ann")
    flat.save(tmp_path / "flat")
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == sorted([F16_FILE, HNSW_FILE, STORE_FILE])
    loaded = load_store(tmp_path / "ann", DIM)
    assert isinstance(loaded, HnswStore) and len(loaded) == len(x)
    assert loaded.search(q, 10) == ann.search(q, 10)
    assert isinstance(load_store(tmp_path / "flat", DIM), FaissFlatStore)
    (tmp_path / "flat" / STORE_FILE).unlink()  # a folder written before store.json existed
    assert len(load_store(tmp_path / "flat", DIM)) == len(x)
    with pytest.raises(ValueError, match="dimension"):
        load_store(tmp_path / "ann", DIM + 1)


@pytest.mark.parametrize("name", [HNSW_FILE, F16_FILE])
def test_truncated_file_is_reported(
    tmp_path: Path, name: str, data: tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore]
) -> None:
    data[3].save(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated|shape|mmap|larger"):
        load_store(tmp_path, DIM)


def test_search_settings_come_from_the_config_at_load(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray, FaissFlatStore, HnswStore]
) -> None:
    ann = data[3]
    ann.save(tmp_path)
    wanted = replace(ann.params, ef_search=ann.params.ef_search * 2, exact_filter_rows=7)
    loaded = load_store(tmp_path, DIM, StoreParams(hnsw=replace(wanted, m=ann.params.m + 8)))
    assert isinstance(loaded, HnswStore)
    assert loaded.params.ef_search == wanted.ef_search and loaded.params.exact_filter_rows == 7
    assert loaded.params.m == ann.params.m  # the graph is as it was built


def test_a_search_uses_the_configured_threads_in_its_own_thread(tmp_path: Path) -> None:
    """OpenMP keeps its thread count per calling thread: each search (in whichever request thread runs
    it) sets the configured one, a build takes every core again, and the setting is read from the config."""
    import threading

    import faiss

    from qa.embeddings.ann import ALL_THREADS

    x, q = clustered(300), clustered(2, seed=1)
    one = StoreParams(search_threads=1)
    assert load_settings(vector_store={"search_threads": 3}).vector_store.store_params().search_threads == 3
    flat, ann = build_store(x, DIM, one), build_store(x, DIM, replace(ANN, search_threads=1))
    flat.save(tmp_path / "flat")
    loaded = load_store(tmp_path / "flat", DIM, StoreParams(search_threads=2))
    seen: dict[str, int] = {}

    def run() -> None:
        flat.search(q, 5)
        seen["flat"] = faiss.omp_get_max_threads()
        loaded.search(q, 5)
        seen["loaded"] = faiss.omp_get_max_threads()
        ann.search(q, 5)
        seen["ann"] = faiss.omp_get_max_threads()
        ann.add(clustered(10, seed=2))
        seen["build"] = faiss.omp_get_max_threads()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert seen == {"flat": 1, "loaded": 2, "ann": 1, "build": ALL_THREADS}


@pytest.mark.parametrize("filtered", [False, True])
def test_a_large_flat_store_scans_codes_and_returns_the_exact_top_k(tmp_path: Path, filtered: bool) -> None:
    """The 8-bit scan only picks candidates: the results are those of the float32 scan, with exact
    scores, also behind a filter and after a save and a load."""
    x, q = clustered(6000, seed=3), clustered(60, seed=4)
    exact = FaissFlatStore(DIM)
    exact.add(x)
    coded = build_store(x, DIM, StoreParams(flat_codes_min_passages=1000))
    assert isinstance(coded, FaissFlatStore) and coded.uses_codes and not exact.uses_codes
    coded.save(tmp_path)
    loaded = load_store(tmp_path, DIM, StoreParams(flat_codes_min_passages=1000))
    assert isinstance(loaded, FaissFlatStore) and loaded.uses_codes
    allowed = np.random.default_rng(5).random(len(x)) < 0.3 if filtered else None
    truth = exact.search(q, 50, allowed)
    for store in (coded, loaded):
        got = store.search(q, 50, allowed)
        assert recall(truth, got) == 1.0
        for t, g in zip(truth, got, strict=True):
            assert [s for _, s in g] == pytest.approx([s for _, s in t], abs=1e-6)
            assert all(allowed is None or allowed[r] for r, _ in g)
            assert [s for _, s in g] == sorted((s for _, s in g), reverse=True)
    # Fewer rows than the threshold: the float32 scan itself.
    assert not build_store(x[:999], DIM, StoreParams(flat_codes_min_passages=1000)).uses_codes


def test_int8_codes_round_into_signed_bytes_and_a_zero_query_is_searched() -> None:
    from qa.embeddings.vector_store import INT8, int8_codes

    v = np.array([[0.5, -0.25, 0.004, -1.0]], dtype=np.float32)
    assert int8_codes(v, INT8 / 1.0).tolist() == [[64.0, -32.0, 1.0, -127.0]]
    assert int8_codes(v * 3, INT8 / 1.0).min() == -INT8  # clipped, never a wrapped byte
    x = clustered(1500, seed=6)
    store = build_store(x, DIM, StoreParams(flat_codes_min_passages=1000))
    assert store.uses_codes
    hits = store.search(np.zeros((1, DIM), dtype=np.float32), 5)[0]
    assert len(hits) == 5 and all(s == 0.0 for _, s in hits)


def _advised(path: Path) -> list[bool]:
    """For each live mapping of ``path`` in this process, whether it is advised MADV_RANDOM (smaps ``rr``)."""
    found: list[bool] = []
    current = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:
            current = len(head) > 5 and head[-1] == str(path)
        elif current and line.startswith("VmFlags:"):
            found.append("rr" in head[1:])
    return found


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc")
def test_loaded_stores_map_their_vectors_for_scattered_reads(tmp_path: Path) -> None:
    """The vectors a search re-scores a few rows at a time are mapped MADV_RANDOM (no read-ahead kept
    resident); a coded flat store reads its codes through a mapping of its own, unmapped once read."""
    x = clustered(3000, seed=8)
    flat = build_store(x, DIM, StoreParams(flat_codes_min_passages=1000))
    flat.save(tmp_path / "flat")
    hnsw = build_store(x, DIM, StoreParams(flat_max_passages=1000))
    hnsw.save(tmp_path / "hnsw")
    loaded = [
        load_store(tmp_path / name, DIM, StoreParams(flat_codes_min_passages=1000))
        for name in ("flat", "hnsw")
    ]
    assert isinstance(loaded[0], FaissFlatStore) and loaded[0].uses_codes and isinstance(loaded[1], HnswStore)
    assert _advised(tmp_path / "flat" / "vectors.npy") == [True]  # the codes' own mapping is gone
    assert _advised(tmp_path / "hnsw" / F16_FILE) == [True]
    q = clustered(5, seed=9)
    for store in loaded:
        assert recall(flat.search(q, 10), store.search(q, 10)) >= 0.9
        np.testing.assert_allclose(store.vectors([0, 7, 2999]), x[[0, 7, 2999]], atol=1e-3)


def _resident_kb(path: Path) -> int:
    """What the mappings of ``path`` have resident in this process (smaps ``Rss``), in kB."""
    total, current = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:
            current = len(head) > 5 and head[-1] == str(path)
        elif current and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc")
def test_a_loaded_hnsw_store_reads_the_rows_it_rescores_without_mapping_them(tmp_path: Path) -> None:
    x = clustered(4000, seed=10)
    built = build_store(x, DIM, StoreParams(flat_max_passages=1000))
    built.save(tmp_path)
    store = load_store(tmp_path, DIM, StoreParams(flat_max_passages=1000))
    assert isinstance(store, HnswStore)
    rows = np.random.default_rng(11).integers(0, len(x), 300)
    assert np.array_equal(store.vectors(rows.tolist()), built.vectors(rows.tolist()))
    q = clustered(20, seed=12)
    assert store.search(q, 10) == built.search(q, 10)
    assert _resident_kb(tmp_path / F16_FILE) == 0  # read, never mapped in
    with pytest.raises(IndexError):
        store.vectors([len(x)])
    store.add(x[:5])  # rows added after a load are in memory: read from there
    assert np.array_equal(store.vectors([len(x) + 4]), built.vectors([4]))
