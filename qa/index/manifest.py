"""The typed manifest of an index version: what its passages were built with, and what it holds.

``IndexKey`` is what a loaded index must match (the dense side: model, precision, chunking, parser; the
lexical side: tokenizer and names); ``Manifest`` adds when it was built and its counts. Both are frozen
and round-trip through the JSON of ``manifest.json`` (``layout`` adds the format and file checksums).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qa.errors import IndexCorruptError, IndexMismatchError


@dataclass(frozen=True)
class Chunking:
    max_chars: int
    overlap_chars: int
    min_chars: int


@dataclass(frozen=True)
class DenseKey:
    """What passage vectors depend on: any difference means every passage is embedded again."""

    model: str
    dim: int
    precision: str | None  # None in indexes built before the precision was recorded
    passage_prefix: str
    max_seq_length: int
    chunking: Chunking
    parser: str
    context: str
    collection: str | None = None  # the Milvus collection holding the passages; None: local files

    def to_json(self) -> dict[str, Any]:
        milvus = {"milvus": {"collection": self.collection}} if self.collection is not None else {}
        return milvus | self.vectors_json()

    def vectors_json(self) -> dict[str, Any]:
        """The key of the vectors alone, whichever store keeps them (the embedding cache's key)."""
        return {
            "model": self.model,
            "dim": self.dim,
            "precision": self.precision,
            "passage_prefix": self.passage_prefix,
            "max_seq_length": self.max_seq_length,
            "chunking": {
                "max_chars": self.chunking.max_chars,
                "overlap_chars": self.chunking.overlap_chars,
                "min_chars": self.chunking.min_chars,
            },
            "parser": self.parser,
            "context": self.context,
        }

    @classmethod
    def from_json(cls, data: Any) -> DenseKey:
        """The key of a built index as recorded. A field it lacks (an index built by an older version)
        reads as None, so that ``IndexKey.check`` names it as a difference."""
        if not isinstance(data, dict):
            raise IndexCorruptError("the manifest has no dense key; run `qa index --rebuild`")
        recorded = _Recorded(data)
        chunking = _Recorded(data.get("chunking"))
        milvus = data.get("milvus")
        return cls(
            model=recorded["model"],
            dim=recorded["dim"],
            precision=recorded["precision"],
            passage_prefix=recorded["passage_prefix"],
            max_seq_length=recorded["max_seq_length"],
            chunking=Chunking(chunking["max_chars"], chunking["overlap_chars"], chunking["min_chars"]),
            parser=recorded["parser"],
            context=recorded["context"],
            collection=milvus.get("collection") if isinstance(milvus, dict) else None,
        )


class _Recorded:
    """A JSON object as an older build may have written it: a missing field reads as None."""

    def __init__(self, data: Any) -> None:
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}

    def __getitem__(self, name: str) -> Any:
        return self.data.get(name)


@dataclass(frozen=True)
class LexicalKey:
    """What the BM25 tokens depend on: the tokenizer and the names (aliases, user dictionary) it knows."""

    tokenizer: str
    names: str

    def to_json(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "names": self.names}

    @classmethod
    def from_json(cls, data: Any) -> LexicalKey | None:
        if not isinstance(data, dict) or set(data) != {"tokenizer", "names"}:
            return None
        return cls(str(data["tokenizer"]), str(data["names"]))


@dataclass(frozen=True)
class IndexKey:
    dense: DenseKey
    lexical: LexicalKey

    def check(self, built: IndexKey | Manifest) -> None:
        """IndexMismatchError, naming what differs, unless an index built with ``built`` fits this key."""
        if isinstance(built, Manifest):
            built = built.key
        was, wants = built.dense.to_json(), self.dense.to_json()
        differ = [key for key in wants if was.get(key) != wants[key]] + [
            key for key in was if key not in wants
        ]
        if differ:
            built_with = ", ".join(f"{key}={was.get(key)!r}" for key in differ)
            asked = ", ".join(f"{key}={wants.get(key)!r}" for key in differ)
            raise IndexMismatchError(
                f"the index was built with {built_with} but the configuration asks for {asked}; "
                "run `qa index` to rebuild it"
            )
        if built.lexical != self.lexical:
            raise IndexMismatchError(
                "the index was built with other tokenizer settings (aliases or user dictionary); run `qa index`"
            )


@dataclass(frozen=True)
class Counts:
    articles: int
    passages: int


@dataclass(frozen=True)
class SegmentRef:
    """One segment of a version: its name, the SHA-256 of its ``segment.json``, and the articles of it
    that are dead in this version (deleted, or replaced by a copy in a later segment)."""

    name: str
    seal: str
    dead: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "seal": self.seal, "dead": sorted(self.dead)}

    @classmethod
    def from_json(cls, data: Any) -> SegmentRef:
        if not (
            isinstance(data, dict)
            and isinstance(data.get("name"), str)
            and isinstance(data.get("seal"), str)
            and isinstance(data.get("dead"), list)
            and all(isinstance(d, str) for d in data["dead"])
        ):
            raise IndexCorruptError(f"the manifest names a segment badly: {data!r}; run `qa index --rebuild`")
        return cls(data["name"], data["seal"], frozenset(data["dead"]))


@dataclass(frozen=True)
class Manifest:
    key: IndexKey
    built_at: str
    counts: Counts | None  # None: not recorded (an old build); not checked then
    segments: tuple[SegmentRef, ...] = ()  # in row order: the live rows of each, one after the other

    def to_json(self) -> dict[str, Any]:
        return {
            "dense": self.key.dense.to_json(),
            "lexical": self.key.lexical.to_json(),
            "built_at": self.built_at,
            "segments": [s.to_json() for s in self.segments],
        } | (
            {"counts": {"articles": self.counts.articles, "passages": self.counts.passages}}
            if self.counts
            else {}
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        counts = data.get("counts")
        if counts is not None and not (
            isinstance(counts, dict)
            and isinstance(counts.get("articles"), int)
            and isinstance(counts.get("passages"), int)
        ):
            raise IndexCorruptError("the manifest's counts are not numbers; run `qa index --rebuild`")
        lexical = LexicalKey.from_json(data.get("lexical")) or LexicalKey("", "")
        segments = data.get("segments")
        if not isinstance(segments, list):
            raise IndexCorruptError("the manifest names no segments; run `qa index --rebuild`")
        return cls(
            key=IndexKey(DenseKey.from_json(data.get("dense")), lexical),
            built_at=str(data.get("built_at", "")),
            counts=Counts(counts["articles"], counts["passages"]) if counts is not None else None,
            segments=tuple(SegmentRef.from_json(s) for s in segments),
        )
