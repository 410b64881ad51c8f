"""`qa serve` with [feeds], as a real process: an item added to the feed is searchable within interval_s
plus the write time, without a restart; the feeds are on /readyz."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qa.live.pages import web_doc_id
from tests.news_site import NewsSite, Route, rss
from tests.test_cli import config as _config  # noqa: F401  (the fixture, reused)

pytestmark = pytest.mark.server
FETCHED = ("000_a2194725df4ab5f6", "001_53bd41b2b23f3bca")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: object, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            if check():  # type: ignore[operator]
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


def test_serve_picks_up_a_new_feed_item(tmp_path: Path, _config: Path, site: NewsSite) -> None:  # noqa: F811
    for doc_id in FETCHED:
        (tmp_path / "corpus" / f"{doc_id}.txt").unlink()
    first = site.add_article("/news/0.html", FETCHED[1])
    site.routes["/rss.xml"] = Route(rss([("越中", first, "2025-01-10")]), content_type="application/rss+xml")
    port = free_port()
    env = {
        **os.environ,
        "QA_FEEDS__URLS": json.dumps([site.url("/rss.xml")]),
        "QA_FEEDS__INTERVAL_S": "1",
        "QA_FETCH__ALLOW_PRIVATE": "true",
        "QA_FETCH__HOST_DELAY_S": "0",
    }
    command = [sys.executable, "-c", "from qa.cli import main; main()", "--config", str(_config)]
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(base + "/readyz", timeout=2).status_code == 200, 120)
        wait_for(lambda: httpx.get(f"{base}/v1/documents/{web_doc_id(first)}").status_code == 200, 30)

        second = site.add_article("/news/1.html", FETCHED[0])
        items = [("胡志明市", second, "2025-01-21"), ("越中", first, "2025-01-10")]
        site.routes["/rss.xml"] = Route(rss(items), content_type="application/rss+xml")
        waited = wait_for(
            lambda: httpx.get(f"{base}/v1/documents/{web_doc_id(second)}").status_code == 200, 30
        )
        assert waited < 1 + 5, waited  # interval_s + the write time (fake encoder), slack for a busy machine

        answer = httpx.post(
            base + "/v1/ask", json={"question": "胡志明市与中国多少个地方保持友好合作关系?"}
        ).json()
        assert (answer["passages"][0]["url"], answer["passages"][0]["date"]) == (second, "2025-01-21")
        (feed,) = httpx.get(base + "/readyz").json()["feeds"]
        assert feed["ok"] and feed["added"] == 2
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode in (0, -15), server.stderr.read().decode() if server.stderr else ""
