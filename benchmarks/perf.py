"""Performance of the whole service: index build, re-index, query latency in process and over HTTP, memory,
cold start. Not a test: run it on purpose (``make bench-perf``) on a quiet machine.

    python benchmarks/perf.py --corpus seeds
    python benchmarks/perf.py --corpus inews [--articles 7353] [--max-chars 0] [--seconds 20]

For each corpus it measures, in one run:

- a full build from scratch (embedding cache emptied) with its split: parse, chunk, tokenise, encode, write;
  then a re-index of the unchanged corpus;
- cold start: a new process that loads the index and answers one question (``qa ask``), and a new
  ``qa serve`` until its first answered ``POST /v1/ask``;
- in-process latency of ``Engine.ask`` (encode + search + fuse + rerank + grounding): p50/p95/p99, and of
  query encoding alone;
- HTTP latency and throughput of ``POST /v1/ask`` at each concurrency (a bounded asyncio httpx driver on
  loopback: N clients, each sending its next request when the previous one is answered);
- resident memory (RSS) of the server after start-up and after each load level.

Questions: the seed dev questions (``../shared/eval/seed_dev.jsonl`` when present) for seeds, article titles
for inews. Writes a table and JSON into ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from qa.config import Settings, load_settings
from qa.documents import NewDocument
from qa.engine import Engine

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
CACHE = ROOT / ".cache"
QA = str(Path(sys.executable).parent / "qa")  # the console command of this environment
DEV_SET = REPO.parent / "shared" / "eval" / "seed_dev.jsonl"
FALLBACK_QUESTIONS = [
    "胡志明市与中国多少个地方保持友好合作关系?",
    "越中两国的贸易额是多少?",
    "范明政总理会见了谁?",
    "越南和中国在哪些领域加强合作?",
]
PROBE = (
    "芽庄市与昆明市签署友好城市协议\n\n"
    "3月5日,芽庄市与昆明市在芽庄签署友好城市协议,双方将开通直航航线,并在旅游、教育和农业领域开展合作。\n"
)
log = logging.getLogger("perf")


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds (nearest rank), and the number of samples."""
    if not samples:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    ordered = sorted(samples)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return {"n": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


# -- corpora -------------------------------------------------------------------------------------------
def prepare_corpus(args: argparse.Namespace, folder: Path) -> list[str]:
    """Fill ``folder`` with the corpus; returns the questions to ask."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if args.corpus == "seeds":
        for path in sorted((REPO / "seeds").iterdir()):
            shutil.copyfile(path, folder / path.name)
        if DEV_SET.is_file():
            rows = [json.loads(line) for line in DEV_SET.read_text(encoding="utf-8").splitlines() if line]
            return [row["question"] for row in rows]
        return FALLBACK_QUESTIONS
    sys.path.insert(0, str(ROOT))
    from inews import articles, write_corpus_files

    picked = articles()[: args.articles]
    write_corpus_files(folder, picked, args.max_chars)
    return [title for title, _ in picked if title.strip()]


def environment(corpus_dir: Path, index_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "QA_CORPUS__DIR": str(corpus_dir),
            "QA_INDEX__DIR": str(index_dir),
            "QA_MODEL__CACHE_DIR": str(REPO / ".qa" / "models"),
            "QA_INDEX__SHOW_PROGRESS": "false",
        }
    )
    return env


def settings_for(corpus_dir: Path, index_dir: Path) -> Settings:
    return load_settings(
        REPO / "config.toml",
        corpus={"dir": corpus_dir},
        index={"dir": index_dir, "show_progress": True},
        model={"cache_dir": REPO / ".qa" / "models"},
    )


# -- build ---------------------------------------------------------------------------------------------
def measure_build(settings: Settings, fresh: bool) -> dict[str, Any]:
    if fresh and settings.index_dir.exists():
        shutil.rmtree(settings.index_dir)  # embedding cache included: everything is embedded again
    engine = Engine(settings)
    _ = engine.encoder  # the model load is part of cold start, not of the build
    started = time.perf_counter()
    report = engine.build(show_progress=True)
    total = time.perf_counter() - started
    started = time.perf_counter()
    again = engine.build(show_progress=False)
    reindex = time.perf_counter() - started
    started = time.perf_counter()
    engine.add_document(NewDocument(doc_id="perf-probe", text=PROBE))
    added = time.perf_counter() - started
    started = time.perf_counter()
    engine.delete_document("perf-probe")
    deleted = time.perf_counter() - started
    return {
        "fresh": fresh,
        "articles": report.articles,
        "passages": report.passages,
        "encoded": report.encoded,
        "seconds": total,
        "passages_per_s": report.passages / total if total else 0.0,
        "encoded_per_s": report.encoded / report.timings["encode"] if report.encoded else None,
        "split": report.timings,
        "reindex_unchanged_seconds": reindex,
        "reindex_changed": again.changed,
        "add_document_seconds": added,
        "delete_document_seconds": deleted,
    }


# -- in process ----------------------------------------------------------------------------------------
def measure_in_process(settings: Settings, questions: list[str], limit: int) -> dict[str, Any]:
    engine = Engine(settings).open(build_if_missing=False)
    engine.query_encoder.cache_size = 0  # every question is encoded: no help from repeats
    asked = questions[:limit]
    for question in asked[:3]:
        engine.ask(question)  # warm-up: lazy statistics, first-call allocations
    encode: list[float] = []
    ask: list[float] = []
    for question in asked:
        t0 = time.perf_counter()
        engine.ask(question)
        ask.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.encoder.encode_queries([question])  # the model alone, without the question cache
        encode.append(time.perf_counter() - t0)
    return {"ask_ms": percentiles(ask), "encode_query_ms": percentiles(encode)}


def cold_start_cli(env: dict[str, str], question: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [QA, "ask", question],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


# -- over HTTP -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    env: dict[str, str], port: int, question: str, workers: int
) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``qa serve``; returns the process and the seconds until its first answered question."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [QA, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = started + 600
    with httpx.Client(timeout=30) as client:
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"qa serve exited with {proc.returncode}")
            try:
                reply = client.post(f"http://127.0.0.1:{port}/v1/ask", json={"question": question})
                if reply.status_code == 200:
                    return proc, time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("qa serve did not answer within 10 minutes")


def tree_cpu(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user + system) the server and its live children have used so far."""
    root = psutil.Process(proc.pid)
    total = 0.0
    for p in (root, *root.children(recursive=True)):
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def own_cpu() -> float:
    """CPU seconds this process (the load generator) has used so far."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def tree_rss(proc: subprocess.Popen[bytes]) -> float:
    """Resident memory of the server and its children, in MiB."""
    root = psutil.Process(proc.pid)
    total = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
    return total / 2**20


async def load_level(
    port: int, questions: list[str], clients: int, seconds: float, counter: list[int]
) -> dict[str, Any]:
    """``counter`` runs on across levels, so that a question repeats only when all have been asked."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=120) as client:

        async def one_client() -> None:
            while time.perf_counter() < stop:
                question = questions[counter[0] % len(questions)]
                counter[0] += 1
                t0 = time.perf_counter()
                try:
                    reply = await client.post("/v1/ask", json={"question": question})
                    key = str(reply.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                statuses[key] = statuses.get(key, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ok = statuses.get("200", 0)
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(latencies),
        "answered_per_s": ok / elapsed,
        "questions_repeated": counter[0] > len(questions),
        "statuses": statuses,
        "latency_ms": percentiles(latencies),
    }


def measure_http(
    env: dict[str, str],
    questions: list[str],
    levels: list[int],
    seconds: float,
    workers: int,
    warmup: float = 0.0,
) -> dict[str, Any]:
    """``warmup``: seconds of load at the first level before any is measured, its figures dropped (a
    new server's first seconds: its workers' first connections and questions, the English dictionary
    read in the background), so that the levels measure the steady state; its questions are not
    asked again."""
    port = free_port()
    proc, cold = start_server(env, port, questions[0], workers)
    try:
        result: dict[str, Any] = {
            "workers": workers,
            "cold_start_first_answer_s": cold,
            "rss_mib_start": tree_rss(proc),
            "warmup_s": warmup,
        }
        result["levels"] = []
        counter = [1]  # the first question was asked by start_server
        if warmup > 0 and levels:
            asyncio.run(load_level(port, questions, levels[0], warmup, counter))
        for clients in levels:
            server_cpu, client_cpu = tree_cpu(proc), own_cpu()
            level = asyncio.run(load_level(port, questions, clients, seconds, counter))
            # Where the machine's cores went: the server's CPU per answer, and the load generator's share
            # (it runs on the same cores, so what it takes the server cannot have).
            level["server_cpu_s"] = tree_cpu(proc) - server_cpu
            level["client_cpu_s"] = own_cpu() - client_cpu
            answered = level["statuses"].get("200", 0)
            level["server_cpu_ms_per_answer"] = 1e3 * level["server_cpu_s"] / answered if answered else None
            level["client_cpu_ms_per_request"] = (
                1e3 * level["client_cpu_s"] / level["requests"] if level["requests"] else None
            )
            level["rss_mib_after"] = tree_rss(proc)
            result["levels"].append(level)
            log.info("HTTP, %d workers, %d clients: %.1f/s", workers, clients, level["answered_per_s"])
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- report --------------------------------------------------------------------------------------------
def table(result: dict[str, Any]) -> str:
    b, q = result["build"], result["in_process"]
    split = ", ".join(f"{k} {v:.1f}s" for k, v in b["split"].items())
    lines = [
        f"corpus {result['corpus']}: {b['articles']} articles, {b['passages']} passages",
        f"build: {b['seconds']:.1f}s = {b['passages_per_s']:.1f} passages/s ({split})",
        f"re-index unchanged: {b['reindex_unchanged_seconds']:.2f}s; add one article "
        f"{b['add_document_seconds']:.2f}s, delete it {b['delete_document_seconds']:.2f}s",
        f"cold start: qa ask {result['cold_start_cli_s']:.1f}s",
        f"in process ask ms: p50 {q['ask_ms']['p50']:.1f} p95 {q['ask_ms']['p95']:.1f} "
        f"p99 {q['ask_ms']['p99']:.1f} (query encoding p50 {q['encode_query_ms']['p50']:.1f})",
        "workers | clients | answered/s | p50 ms | p95 ms | p99 ms | statuses | RSS MiB after",
    ]
    for http in result["http"]:
        lines.append(
            f"{http['workers']} worker(s): qa serve to first answer {http['cold_start_first_answer_s']:.1f}s, "
            f"RSS after start {http['rss_mib_start']:.0f} MiB"
        )
        for level in http["levels"]:
            lat = level["latency_ms"]
            lines.append(
                f"{http['workers']:7d} | {level['clients']:7d} | {level['answered_per_s']:10.1f} | "
                f"{lat['p50']:6.1f} | {lat['p95']:6.1f} | {lat['p99']:6.1f} | {level['statuses']} | "
                f"{level['rss_mib_after']:.0f}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", choices=["seeds", "inews"], default="seeds")
    parser.add_argument("--articles", type=int, default=7353, help="inews articles (all: 7353)")
    parser.add_argument("--max-chars", type=int, default=0, help="cut inews articles (0: whole)")
    parser.add_argument("--reuse", action="store_true", help="keep the index and its embedding cache")
    parser.add_argument("--queries", type=int, default=200, help="questions asked in process")
    parser.add_argument("--seconds", type=float, default=15.0, help="per HTTP load level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server processes")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    name = args.corpus if args.corpus == "seeds" else f"inews-{args.articles}-{args.max_chars}"
    work = CACHE / f"perf-{name}"
    corpus_dir, index_dir = work / "corpus", work / "index"
    questions = prepare_corpus(args, corpus_dir)
    settings = settings_for(corpus_dir, index_dir)
    env = environment(corpus_dir, index_dir)

    result: dict[str, Any] = {"corpus": name, "cpu_count": os.cpu_count()}
    result["build"] = measure_build(settings, fresh=not args.reuse)
    if not result["build"]["passages"]:
        raise SystemExit(f"nothing was indexed from {corpus_dir}: see the log for skipped files")
    result["cold_start_cli_s"] = cold_start_cli(env, questions[0])
    result["in_process"] = measure_in_process(settings, questions, args.queries)
    result["http"] = [
        measure_http(env, questions, args.concurrency, args.seconds, workers) for workers in args.workers
    ]
    text = table(result)
    print(text)
    out = args.out or ROOT / "results" / f"perf-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    log.info("wrote %s", out)


if __name__ == "__main__":
    main()
