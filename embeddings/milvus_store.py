"""Passages in a Milvus collection: dense vectors (inner product) and BM25 over the Chinese analyzer.

One entity per passage of one article version, keyed by a string the index computes (see
``qa.index.milvus_passages.passage_key``). Milvus computes the sparse BM25 vector itself from ``text``
(a ``Function`` of type BM25), so full-text and hybrid search run inside the engine and scale with it.

``pymilvus`` is imported only when this backend is used. A URI with a scheme (``http://host:19530``)
reaches a server or cluster; a path ending in ``.db`` runs Milvus Lite, which starts one local server
process per file and lets only one process open that file.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.embeddings.encoder import Vectors
from qa.embeddings.errors import VectorStoreError

log = logging.getLogger(__name__)

MAX_TEXT = 65_535  # bytes of a VARCHAR
BATCH = 500  # entities per insert or query request
Hits = list[tuple[str, float]]


class MilvusStoreError(VectorStoreError):
    """Milvus is unreachable, or the collection does not fit this index."""


@dataclass(frozen=True)
class Passage:
    key: str
    doc_id: str
    date: str  # "" when the article has no date
    section: str
    start: int
    end: int
    text: str  # what BM25 indexes (folded passage text with its context line)


def quote(value: str) -> str:
    """A string literal of Milvus's filter language (JSON escaping: quotes, backslashes, controls)."""
    return json.dumps(value, ensure_ascii=False)


def filter_expr(
    doc_ids: Iterable[str] | None = None, date_from: str | None = None, date_to: str | None = None
) -> str:
    """A boolean expression over doc_id and date; "" for no filter. Undated articles never match a
    date range (as in the local index)."""
    parts = []
    if doc_ids is not None:
        parts.append(f"doc_id in [{', '.join(quote(d) for d in sorted(set(doc_ids)))}]")
    if date_from or date_to:
        parts.append('date != ""')
    if date_from:
        parts.append(f"date >= {quote(date_from)}")
    if date_to:
        parts.append(f"date <= {quote(date_to)}")
    return " and ".join(parts)


def is_local(uri: str) -> bool:
    return "://" not in uri


class _Connections:
    """One client per (URI, token) in this process, shared and counted: Milvus Lite's server for a file
    is stopped when the last user closes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], tuple[Any, int]] = {}

    def acquire(self, uri: str, token: str) -> Any:
        with self._lock:
            client, users = self._clients.get((uri, token), (None, 0))
            if client is None:
                client = _connect(uri, token)
            self._clients[(uri, token)] = (client, users + 1)
            return client

    def release(self, uri: str, token: str) -> None:
        with self._lock:
            client, users = self._clients.get((uri, token), (None, 0))
            if client is None:
                return
            if users > 1:
                self._clients[(uri, token)] = (client, users - 1)
                return
            del self._clients[(uri, token)]
        client.close()
        if is_local(uri):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(uri)


def _connect(uri: str, token: str) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MilvusStoreError(
            "the milvus backend needs pymilvus (and milvus-lite for a local file): "
            "pip install 'zh-news-qa[milvus]'"
        ) from exc
    if is_local(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, token=token, timeout=30)
    except Exception as exc:  # pymilvus raises MilvusException or grpc errors
        raise MilvusStoreError(f"cannot connect to Milvus at {uri}: {exc}") from exc


_CONNECTIONS = _Connections()


class MilvusStore:
    """A collection of passages. Every call raises MilvusStoreError when Milvus fails."""

    def __init__(self, uri: str, collection: str, dim: int, *, token: str = "") -> None:
        self.uri, self.collection, self.dim, self._token = uri, collection, dim, token
        self._client = _CONNECTIONS.acquire(uri, token)
        self._closed = False
        try:
            self._ensure_collection()
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------------
    def _ensure_collection(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        c = self._client
        if c.has_collection(self.collection):
            fields = {f["name"]: f for f in c.describe_collection(self.collection)["fields"]}
            dim = fields.get("dense", {}).get("params", {}).get("dim")
            if "sparse" not in fields or dim is None or int(dim) != self.dim:
                raise MilvusStoreError(
                    f"Milvus collection {self.collection!r} at {self.uri} does not hold {self.dim}-dimensional "
                    "passages with BM25; drop it or configure another vector_store.collection"
                )
            c.load_collection(self.collection)
            return
        schema = c.create_schema(auto_id=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("date", DataType.VARCHAR, max_length=16)
        schema.add_field("section", DataType.VARCHAR, max_length=32)
        schema.add_field("start", DataType.INT64)
        schema.add_field("end", DataType.INT64)
        schema.add_field(
            "text",
            DataType.VARCHAR,
            max_length=MAX_TEXT,
            enable_analyzer=True,
            analyzer_params={"type": "chinese"},
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        index = c.prepare_index_params()
        # Exact search on Milvus Lite (like FAISS flat); a cluster picks its own ANN index.
        index.add_index("dense", index_type="FLAT" if is_local(self.uri) else "AUTOINDEX", metric_type="IP")
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        index.add_index("doc_id", index_type="INVERTED")
        # Strong: a passage written by any replica is searchable as soon as its write returns.
        c.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")
        log.info("created Milvus collection %s at %s (dim %d)", self.collection, self.uri, self.dim)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _CONNECTIONS.release(self.uri, self._token)

    def __enter__(self) -> MilvusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._closed:
            raise MilvusStoreError("the Milvus store is closed")
        try:
            return getattr(self._client, method)(self.collection, *args, **kwargs)
        except MilvusStoreError:
            raise
        except Exception as exc:
            raise MilvusStoreError(
                f"Milvus {what} failed on {self.collection!r} at {self.uri}: {exc}"
            ) from exc

    # -- writes ------------------------------------------------------------------------------------
    def upsert(self, passages: Sequence[Passage], vectors: Vectors) -> None:
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        for i in range(0, len(passages), BATCH):
            rows = [
                {
                    "key": p.key,
                    "doc_id": p.doc_id,
                    "date": p.date,
                    "section": p.section,
                    "start": p.start,
                    "end": p.end,
                    "text": _clip(p.text),
                    "dense": np.asarray(v, dtype=np.float32).tolist(),
                }
                for p, v in zip(passages[i : i + BATCH], vectors[i : i + BATCH], strict=True)
            ]
            self._call("upsert", "upsert", rows)

    def delete(self, keys: Iterable[str]) -> int:
        todo = list(keys)
        for i in range(0, len(todo), BATCH):
            self._call("delete", "delete", ids=todo[i : i + BATCH])
        return len(todo)

    def delete_docs(self, doc_ids: Iterable[str]) -> None:
        expr = filter_expr(doc_ids=doc_ids)
        if expr:
            self._call("delete", "delete", filter=expr)

    # -- reads -------------------------------------------------------------------------------------
    def count(self) -> int:
        rows = self._call("count", "query", filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def keys(self) -> Iterator[str]:
        """Every key in the collection (paged; for reconciliation after a crash or a rebuild)."""
        if self._closed:
            raise MilvusStoreError("the Milvus store is closed")
        try:
            it = self._client.query_iterator(
                self.collection, batch_size=BATCH * 4, filter="", output_fields=["key"]
            )
            try:
                while batch := it.next():
                    yield from (row["key"] for row in batch)
            finally:
                it.close()
        except Exception as exc:
            raise MilvusStoreError(
                f"Milvus query failed on {self.collection!r} at {self.uri}: {exc}"
            ) from exc

    def vectors(self, keys: Sequence[str]) -> dict[str, Vectors]:
        found: dict[str, Vectors] = {}
        for i in range(0, len(keys), BATCH):
            rows = self._call("get", "get", ids=list(keys[i : i + BATCH]), output_fields=["dense"])
            for row in rows:
                found[row["key"]] = np.asarray(row["dense"], dtype=np.float32)
        return found

    def dense_search(self, queries: Vectors, k: int, expr: str = "") -> list[Hits]:
        if k <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        data = [np.asarray(q, dtype=np.float32).tolist() for q in queries]
        res = self._call(
            "dense search",
            "search",
            data=data,
            anns_field="dense",
            limit=k,
            filter=expr,
            search_params={"metric_type": "IP"},
        )
        return [_hits(r) for r in res]

    def lexical_search(self, texts: Sequence[str], k: int, expr: str = "") -> list[Hits]:
        if k <= 0 or not texts:
            return [[] for _ in texts]
        res = self._call(
            "BM25 search",
            "search",
            data=[_clip(t) or " " for t in texts],
            anns_field="sparse",
            limit=k,
            filter=expr,
            search_params={"metric_type": "BM25"},
        )
        return [_hits(r) for r in res]

    def hybrid_search(
        self,
        requests: Sequence[tuple[Vectors | str, int]],
        k: int,
        expr: str = "",
        *,
        rrf_k: int = 60,
    ) -> tuple[Hits, dict[str, Vectors]]:
        """Dense and BM25 requests (a vector or a text, each with its candidate count) fused inside
        Milvus by RRFRanker(rrf_k); the fused hits, and their vectors (returned with the hits, so a
        concurrent delete cannot take them away in between)."""
        from pymilvus import AnnSearchRequest, RRFRanker

        reqs = []
        for data, limit in requests:
            if isinstance(data, str):
                field, params, payload = "sparse", {"metric_type": "BM25"}, [_clip(data) or " "]
            else:
                field, params = "dense", {"metric_type": "IP"}
                payload = [np.asarray(data, dtype=np.float32).tolist()]
            reqs.append(
                AnnSearchRequest(data=payload, anns_field=field, param=params, limit=limit, expr=expr)
            )
        res = self._call(
            "hybrid search",
            "hybrid_search",
            reqs=reqs,
            ranker=RRFRanker(rrf_k),
            limit=k,
            output_fields=["dense"],
        )
        hits = list(res[0]) if res else []
        vectors = {str(h["id"]): np.asarray(h["entity"]["dense"], dtype=np.float32) for h in hits}
        return _hits(hits), vectors


def _hits(result: Iterable[dict[str, Any]]) -> Hits:
    return [(str(hit["id"]), float(hit["distance"])) for hit in result]


def _clip(text: str) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= MAX_TEXT else data[:MAX_TEXT].decode("utf-8", errors="ignore")
