"""One typed Settings object, loaded once from config.toml and overridable by QA_* environment variables."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from qa.errors import ConfigError

if TYPE_CHECKING:
    from qa.embeddings.vector_store import StoreParams

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusSettings(_Section):
    dir: Path
    patterns: tuple[str, ...] = Field(min_length=1)
    max_file_bytes: int = Field(gt=0)


class IndexSettings(_Section):
    dir: Path
    show_progress: bool
    # Segments: each write adds one; more than max_segments are merged, merge_width adjacent ones at a
    # time (the cheapest run), and a segment with more than max_dead_share deleted rows is rewritten.
    max_segments: int = Field(default=8, ge=1, le=1000)
    merge_width: int = Field(default=4, ge=2, le=1000)
    max_dead_share: float = Field(default=0.3, gt=0.0, le=1.0)
    merge: Literal["background", "inline", "off"] = "background"


class ModelSettings(_Section):
    name: str = Field(min_length=1)
    cache_dir: Path
    query_prefix: str
    passage_prefix: str
    batch_size: int = Field(ge=1, le=4096)
    max_seq_length: int = Field(ge=16, le=8192)
    # auto: int8 (ONNX Runtime) where onnxruntime is installed and the CPU has VNNI, else fp32.
    precision: Literal["auto", "fp32", "int8"] = "auto"
    threads: int = Field(default=0, ge=0, le=1024)  # int8 runtime threads; 0 = every usable core


class VectorStoreSettings(_Section):
    backend: Literal["faiss", "milvus"]
    # milvus: a server or cluster ("http://host:19530") or a Milvus Lite file (a path ending in .db,
    # relative to the config file); the token is "user:password" or an API key, "" for none.
    uri: str = Field(default=".qa/milvus.db", min_length=1)
    token: str = ""
    collection: str = Field(default="qa_passages", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    hybrid: bool = True  # fuse dense and BM25 inside Milvus (RRFRanker); false: fuse the two lists here
    # faiss: exact search up to flat_max_passages passages, above that an approximate index (ann).
    flat_max_passages: int = Field(default=200_000, ge=0)
    ann: Literal["hnsw"] = "hnsw"
    hnsw_m: int = Field(default=32, ge=4, le=128)
    hnsw_ef_construction: int = Field(default=40, ge=8, le=2048)
    hnsw_ef_search: int = Field(default=2048, ge=8, le=8192)
    exact_filter_rows: int = Field(default=50_000, ge=0)  # filters allowing fewer rows are searched exactly
    search_threads: int = Field(default=1, ge=0, le=256)  # OpenMP threads per faiss search; 0: every core
    # faiss flat: from this many passages the scan reads 8-bit codes, its candidates re-scored exactly; 0 = never
    flat_codes_min_passages: int = Field(default=20_000, ge=0)

    def store_params(self) -> StoreParams:
        """What embeddings.vector_store.build_store needs (imported here: faiss loads only when used)."""
        from qa.embeddings.ann import HnswParams
        from qa.embeddings.vector_store import StoreParams

        hnsw = HnswParams(self.hnsw_m, self.hnsw_ef_construction, self.hnsw_ef_search, self.exact_filter_rows)
        return StoreParams(
            self.flat_max_passages, self.ann, hnsw, self.search_threads, self.flat_codes_min_passages
        )

    @model_validator(mode="after")
    def _uri_is_server_or_lite_file(self) -> VectorStoreSettings:
        if self.backend == "milvus" and "://" not in self.uri and not self.uri.endswith(".db"):
            raise ValueError(
                "vector_store.uri must be http(s)://host:port or a Milvus Lite file ending in .db"
            )
        return self


class ChunkingSettings(_Section):
    max_chars: int = Field(ge=20, le=10_000)
    overlap_chars: int = Field(ge=0)
    min_chars: int = Field(ge=1)

    def kwargs(self) -> dict[str, int]:
        """As keyword arguments of qa.ingest.chunker.chunk_article."""
        return {"max_chars": self.max_chars, "overlap_chars": self.overlap_chars, "min_chars": self.min_chars}

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap_chars >= self.max_chars:
            raise ValueError("overlap_chars must be smaller than max_chars")
        return self


class RetrievalSettings(_Section):
    top_k: int = Field(ge=1, le=50)
    candidates: int = Field(ge=1, le=10_000)
    rrf_k: int = Field(ge=1)
    dense_weight: float = Field(ge=0)
    lexical_weight: float = Field(ge=0)
    related_penalty: float = Field(gt=0, le=1)
    rerank_depth: int = Field(ge=0, le=1000)
    # learned: the weights in ranker_weights (fitted by benchmarks/fit_ranker.py); hand: the blend below
    ranker: Literal["learned", "hand"] = "hand"
    ranker_weights: str = ""  # "" = the weights shipped in qa/data/ranker.json; else a path
    # learned: the answer gate in gate_weights (benchmarks/fit_gate.py; needs ranker = "learned"); rules: below
    abstention: Literal["learned", "rules"] = "rules"
    gate_weights: str = ""  # "" = the gate shipped in qa/data/gate.json; else a path
    coverage_weight: float = Field(ge=0)
    type_weight: float = Field(ge=0)
    history_turns: int = Field(ge=0, le=20)
    history_weight: float = Field(ge=0, le=1)
    min_dense_score: float = Field(ge=-1, le=1)
    min_dense_score_foreign: float = Field(ge=-1, le=1)
    entity_relief: float = Field(ge=0, le=1)
    min_coverage: float = Field(ge=0, le=1)
    rank_window: int = Field(ge=1)
    near_miss_margin: float = Field(ge=0, le=2)
    entity_check: bool
    userdict: str


class AliasSettings(_Section):
    groups: tuple[tuple[str, ...], ...]

    @model_validator(mode="after")
    def _groups_have_two_names(self) -> AliasSettings:
        for group in self.groups:
            if len(group) < 2 or any(not name.strip() for name in group):
                raise ValueError(f"each alias group needs two or more non-empty names, got {list(group)}")
        return self


# A Host header name: a DNS name, an IPv4 address or a bracketed IPv6 address, without a port.
_HOST_NAME = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*|\[[0-9a-f:.]+\]"
)
# An origin as browsers send it: scheme://host[:port], no path.
_ORIGIN = re.compile(r"https?://(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?")


def _allowed_host(entry: str) -> str:
    """An entry of server.allowed_hosts: "*", a name ("qa.example.com", "10.0.0.5", "[::1]") or a
    domain and its subdomains (".example.com"). Lower case, no port, no scheme."""
    name = entry.strip().lower().rstrip(".")
    if name == "*" or _HOST_NAME.fullmatch(name.removeprefix(".")):
        return name
    if name.startswith("::") or name.count(":") > 1:
        name = f"[{name}]"  # a bare IPv6 address
        if _HOST_NAME.fullmatch(name):
            return name
    raise ValueError(
        f"{entry!r} is not a host name: give names such as 'qa.example.com', '.example.com' "
        "(with subdomains), '10.0.0.5' or '[::1]', without scheme or port, or '*' for any host"
    )


def _allowed_origin(entry: str) -> str:
    origin = entry.strip().lower().rstrip("/")
    if origin == "*" or _ORIGIN.fullmatch(origin):
        return origin
    raise ValueError(
        f"{entry!r} is not an origin: give scheme://host[:port] such as 'https://qa.example.com' "
        "(no path), or '*' for any origin"
    )


class ServerSettings(_Section):
    host: str = Field(min_length=1)
    port: int = Field(ge=0, le=65535)
    max_question_chars: int = Field(ge=1)
    max_body_bytes: int = Field(ge=1024)
    max_top_k: int = Field(ge=1, le=1000)
    api_keys: tuple[str, ...]  # full access
    read_keys: tuple[str, ...] = ()  # ask, chat, list and read articles; no writes
    workers: int = Field(ge=1, le=64)
    # workers > 1: each its own listening socket (SO_REUSEPORT) instead of one shared by all
    socket_per_worker: bool = True
    query_cache_size: int = Field(ge=0)
    query_batch_max: int = Field(ge=1, le=1024)
    query_batch_wait_ms: float = Field(ge=0, le=1000)
    # Host names accepted besides the loopback names (and the bind address when it is one address).
    allowed_hosts: tuple[str, ...] = ()
    # Origins allowed to send POST/PUT/PATCH/DELETE besides the service's own.
    allowed_origins: tuple[str, ...] = ()
    timeout_keep_alive: int = Field(default=5, ge=1, le=3600)  # seconds an idle connection stays open
    timeout_headers: float = Field(default=10.0, gt=0, le=600)  # seconds to send a request's head
    limit_concurrency: int = Field(default=0, ge=0)  # connections + requests at once; 0 = no limit
    # questions searched and ranked at once per process; more wait in arrival order; 0 = no limit
    questions_at_once: int = Field(default=2, ge=0, le=1024)
    # read the English dictionary (CC-CEDICT) in the background once ready, not in the first English question
    warm_dictionary: bool = True

    @field_validator("allowed_hosts", mode="after")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_allowed_host(entry) for entry in value)

    @field_validator("allowed_origins", mode="after")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_allowed_origin(entry) for entry in value)

    @field_validator("read_keys", mode="after")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not key.strip() for key in value):
            raise ValueError("an API key must not be empty")
        return value

    @model_validator(mode="after")
    def _key_in_one_list(self) -> ServerSettings:
        both = set(self.api_keys) & set(self.read_keys)
        if both:
            raise ValueError("a key is listed in both server.api_keys and server.read_keys; keep it in one")
        return self


class RateLimitSettings(_Section):
    """Requests per client (its API key when it presents a valid one, else its IP address)."""

    enabled: bool = False
    ask: str = "60/minute"  # POST /v1/ask
    chat: str = "60/minute"  # POST /v1/chat/completions
    documents_write: str = "30/minute"  # POST /v1/documents, DELETE /v1/documents/{doc_id}
    strategy: Literal["moving-window", "fixed-window", "sliding-window-counter"] = "moving-window"
    # "memory://": counts kept in each server process; "redis://host:6379" (with the redis package)
    # or "memcached://host:11211" share them between processes and replicas.
    storage: str = "memory://"

    @field_validator("ask", "chat", "documents_write", mode="after")
    @classmethod
    def _limits(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit: write e.g. '60/minute', '10/second;100/hour'"
            ) from None
        return value

    @field_validator("storage", mode="after")
    @classmethod
    def _storage(cls, value: str) -> str:
        import limits.storage

        registered: dict[str, object] = getattr(limits.storage, "SCHEMES", {})  # scheme → storage class
        known = sorted(s for s in registered if not s.startswith("async+")) or [
            "memory",
            "redis",
            "memcached",
        ]
        if value.partition("://")[0] not in known or "://" not in value:
            raise ValueError(f"{value!r} is not a storage URI: use one of the schemes {', '.join(known)}")
        return value


class TelegramSettings(_Section):
    enabled: bool
    bot_token: str
    secret_token: str
    path: str = Field(pattern=r"^/[\w/\-]*$")
    max_message_chars: int = Field(ge=100, le=100_000)
    history_turns: int = Field(ge=0, le=50)
    # the newsroom bot: who may use it, how long its shared state lasts, the Bot API it talks to
    allowed_chats: tuple[int, ...]
    history_ttl_hours: float = Field(gt=0, le=24 * 365)
    update_ttl_hours: float = Field(gt=0, le=24 * 30)
    flood_retries: int = Field(ge=0, le=10)
    api_base_url: str = Field(pattern=r"^https?://[^\s]+$")
    poll_timeout: int = Field(ge=0, le=600)

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> TelegramSettings:
        if self.enabled and not self.secret_token:
            raise ValueError("telegram.secret_token must be set when telegram.enabled is true")
        return self

    @field_validator("bot_token", mode="after")
    @classmethod
    def _token_shape(cls, value: str) -> str:
        if value and not re.fullmatch(r"[0-9]+:[\w-]+", value):
            raise ValueError("not a bot token: @BotFather's tokens look like '123456:ABC-DEF…'")
        return value

    @field_validator("secret_token", mode="after")
    @classmethod
    def _secret_shape(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and - as a secret token")
        return value

    @field_validator("allowed_chats", mode="after")
    @classmethod
    def _chat_ids(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for chat in value:
            if not -(2**63) <= chat < 2**63:
                raise ValueError(f"{chat} is not a Telegram chat id (a 64-bit integer)")
        return value


class GenerationSettings(_Section):
    """Written answers from an OpenAI-compatible language model, each sentence checked (qa/generation/)."""

    backend: Literal["extractive", "openai"] = "extractive"
    base_url: str = Field(default="http://127.0.0.1:11434/v1", pattern=r"^https?://\S+$")
    model: str = Field(default="qwen2.5:7b-instruct", min_length=1)
    api_key: str = ""  # from QA_GENERATION__API_KEY in practice; "" for local servers
    timeout_s: float = Field(default=20.0, gt=0, le=600)
    max_tokens: int = Field(default=400, ge=16, le=32_768)
    temperature: float = Field(default=0.1, ge=0, le=2)
    passages: int = Field(default=5, ge=1, le=50)  # top passages numbered [1]..[k] in the prompt
    min_overlap: float = Field(
        default=0.25, ge=0, le=1
    )  # share of a Chinese sentence's pairs in its passages


class FetchSettings(_Section):
    """Fetching web pages and feeds (qa/ingest/fetch.py)."""

    timeout_s: float = Field(default=10.0, gt=0, le=300)  # to connect, and between two reads
    deadline_s: float = Field(default=30.0, gt=0, le=3600)  # the whole fetch of one page or feed
    max_bytes: int = Field(default=2_000_000, ge=1024)  # larger pages and feeds are refused
    max_redirects: int = Field(default=5, ge=0, le=30)
    user_agent: str = Field(default="zh-news-qa/0.1 (news question answering)", min_length=1)
    respect_robots: bool = True  # robots.txt of each site is fetched once and obeyed
    host_delay_s: float = Field(
        default=1.0, ge=0, le=600
    )  # at least this long between two requests to a host
    allow_private: bool = False  # private, loopback and link-local addresses (tests, an intranet)


class FeedSettings(_Section):
    """RSS/Atom feeds polled by `qa serve` and `qa watch` (qa/ingest/feeds.py)."""

    urls: tuple[str, ...] = ()
    interval_s: float = Field(default=900.0, ge=1, le=86_400)  # between two polls of a feed
    max_backoff_s: float = Field(default=3600.0, ge=1, le=7 * 86_400)  # a failing feed waits at most this
    max_items: int = Field(default=50, ge=1, le=10_000)  # new items fetched per feed and poll

    @field_validator("urls", mode="after")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not re.match(r"^https?://[^\s/]+", url.strip(), re.IGNORECASE):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return tuple(url.strip() for url in value)


class DedupSettings(_Section):
    """Near-duplicate (republished) stories found at ingestion (qa/ingest/dedup.py)."""

    enabled: bool = True
    threshold: float = Field(default=0.7, gt=0, le=1)  # estimated Jaccard of shingles: a copy above
    shingle_chars: int = Field(default=5, ge=2, le=20)
    permutations: int = Field(default=128, ge=16, le=1024)


class LogSettings(_Section):
    """Logging of every command and server process (qa.logs); ``qa -v`` means level DEBUG."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"  # json: one object a line, for log collectors


class MetricsSettings(_Section):
    """GET /metrics (qa.metrics): Prometheus text format, protected like the other read routes."""

    enabled: bool = True
    # with `qa serve --workers N` (N > 1): the folder where workers' values are added up; emptied at start
    multiprocess_dir: Path = Path(".qa/metrics")


class Settings(BaseSettings):
    """Every knob of the service. Build it with :func:`load_settings`, not directly."""

    model_config = SettingsConfigDict(
        env_prefix="QA_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    corpus: CorpusSettings
    index: IndexSettings
    model: ModelSettings
    vector_store: VectorStoreSettings
    chunking: ChunkingSettings
    retrieval: RetrievalSettings
    aliases: AliasSettings
    server: ServerSettings
    rate_limit: RateLimitSettings = RateLimitSettings()
    telegram: TelegramSettings
    generation: GenerationSettings = GenerationSettings()
    fetch: FetchSettings = FetchSettings()
    feeds: FeedSettings = FeedSettings()
    dedup: DedupSettings = DedupSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    config_path: Path = Path()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, which is passed in as init values.
        return (env_settings, init_settings)

    @property
    def gate_weights_path(self) -> Path:
        """The answer gate's weights: the packaged ones unless ``retrieval.gate_weights`` names a file."""
        if self.retrieval.gate_weights:
            return self.resolve(Path(self.retrieval.gate_weights))
        return Path(__file__).resolve().parent / "data" / "gate.json"

    @property
    def ranker_weights_path(self) -> Path:
        """The learned ranker's weights: the packaged ones unless ``retrieval.ranker_weights`` names a file."""
        if self.retrieval.ranker_weights:
            return self.resolve(Path(self.retrieval.ranker_weights))
        return Path(__file__).resolve().parent / "data" / "ranker.json"

    def resolve(self, path: Path) -> Path:
        """A configured path, relative to the folder of the config file."""
        return path if path.is_absolute() else (self.config_path.parent / path).resolve()

    @property
    def corpus_dir(self) -> Path:
        return self.resolve(self.corpus.dir)

    @property
    def index_dir(self) -> Path:
        return self.resolve(self.index.dir)

    @property
    def model_cache_dir(self) -> Path:
        return self.resolve(self.model.cache_dir)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif item["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            lines.append(f"bad value for '{key}': {item['msg']} (got {item.get('input')!r})")
    return "; ".join(lines)


def config_file(path: Path | str | None = None) -> Path:
    """The file to read: the argument, else $QA_CONFIG, else ./config.toml, else the repository's."""
    if path:
        return Path(path)
    if os.environ.get("QA_CONFIG"):
        return Path(os.environ["QA_CONFIG"])
    local = Path.cwd() / "config.toml"
    return local if local.is_file() else REPO_CONFIG


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the config file, apply QA_* environment overrides, validate. Raises ConfigError."""
    file = config_file(path).resolve()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {file}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {file}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file} is not valid TOML: {exc}") from exc
    if "config_path" in data:
        raise ConfigError(f"{file}: unknown key 'config_path'")
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    try:
        return Settings(**data, config_path=file)
    except ValidationError as exc:
        raise ConfigError(f"{file}: {_describe(exc)}") from exc
