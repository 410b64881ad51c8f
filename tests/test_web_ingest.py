"""Web pages into the corpus: extraction, dates, citations that carry the page's URL and date,
republished copies stored once, and failures that lose nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qa.config import Settings
from qa.documents import NewDocument
from qa.engine import Engine, Filters
from qa.ingest.dedup import MinHasher, story_text
from qa.ingest.extract import extract_page
from qa.live.pages import PageIngester, web_doc_id
from qa.records import Section
from qa.serialize import answer_to_json
from tests.conftest import SEEDS, settings_in
from tests.news_site import NewsSite, Route, article_html

SEED = "000_a2194725df4ab5f6"
QUESTION = "胡志明市与中国多少个地方保持友好合作关系?"


def without_seed(root: Path, doc_id: str = SEED) -> Settings:
    """Settings over the seeds but ``doc_id`` (to be fetched from the site instead)."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    for path in SEEDS.glob("*.txt"):
        if path.stem != doc_id:
            shutil.copy(path, corpus / path.name)
    return settings_in(root, fetch={"allow_private": True, "host_delay_s": 0})


def corpus_bytes(settings: Settings) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(settings.corpus_dir.iterdir())}


@pytest.mark.parametrize("style", ["dateline", "meta", "jsonld", "published"])
def test_extracted_page_has_title_date_body_and_teasers(style: str) -> None:
    title, page = article_html(SEED, date_style=style)
    extracted = extract_page(page, "http://127.0.0.1/a.html")
    assert extracted.title == title
    assert extracted.date == "2025-01-21"
    assert "胡志明市与中国8个地方保持着友好合作关系" in extracted.body
    assert "首页" not in extracted.text and "版权所有" not in extracted.text  # navigation, footer
    assert len(extracted.teasers) == 4 and all(t.summary for t in extracted.teasers)


def test_undated_page_stays_undated_unless_the_feed_dates_it() -> None:
    _, page = article_html(SEED, date_style="none")
    assert extract_page(page, "http://x/a").date is None
    assert extract_page(page, "http://x/a", fallback_date="2025-01-20").date == "2025-01-20"


def test_page_ingested_and_cited_with_its_url_and_date(tmp_path: Path, site: NewsSite) -> None:
    settings = without_seed(tmp_path)
    url = site.add_article("/news/hcmc.html", SEED)
    engine = Engine(settings).open(show_progress=False)
    ingester = PageIngester(engine)
    outcome = ingester.ingest(url)
    assert (outcome.status, outcome.doc_id, outcome.date) == ("added", web_doc_id(url), "2025-01-21")

    article = engine.index.articles[outcome.doc_id]
    assert article.url == url and article.fetched_at is not None
    sections = {s.section for s in article.segments}
    assert sections == {Section.BODY, Section.RELATED}  # the teasers are labelled as on scraped pages
    assert "图自越通社" not in story_text(article)

    answer = engine.ask(QUESTION)
    assert answer.answerable
    passages = answer_to_json(answer)["passages"]
    top = passages[0]
    assert (top["doc_id"], top["url"], top["date"]) == (outcome.doc_id, url, "2025-01-21")
    for passage in passages:
        if passage["doc_id"] == outcome.doc_id:
            assert article.text[passage["start"] : passage["end"]] == passage["text"]
    # stored on disk exactly as cited, and found again by a fresh engine
    fresh = Engine(settings).open(show_progress=False)
    assert fresh.index.articles[outcome.doc_id].text == article.text
    # a date filter keeps it (it is dated), the next day's excludes it
    dated = engine.ask(QUESTION, filters=Filters(date_from="2025-01-21", date_to="2025-01-21"))
    assert {h.chunk.doc_id for h in dated.hits} == {outcome.doc_id}

    assert ingester.ingest(url).status == "unchanged"


def test_republished_seed_stored_once_and_cited_once(fake_settings: Settings, site: NewsSite) -> None:
    """The same wire story on another site (other title markup, navigation and teasers): not stored
    again; the seed lists the other URL, and an answer cites the story once."""
    settings = fake_settings.model_copy(
        update={"fetch": fake_settings.fetch.model_copy(update={"allow_private": True, "host_delay_s": 0})}
    )
    engine = Engine(settings).open(show_progress=False)
    before = set(engine.index.articles)
    _, page = article_html(SEED, date_style="meta")
    other = page.replace("越通社".encode(), "另一家网站".encode())
    site.routes["/copy/story.html"] = Route(other)
    url = site.url("/copy/story.html")

    outcome = PageIngester(engine).ingest(url)
    assert outcome.status == "duplicate" and outcome.doc_id == SEED
    assert outcome.similarity is not None and outcome.similarity > 0.9
    assert set(engine.index.articles) == before
    seed = engine.index.articles[SEED]
    assert seed.other_urls == (url,)
    assert seed.text == (SEEDS / f"{SEED}.txt").read_text(encoding="utf-8")  # citations unchanged

    answer = engine.ask(QUESTION, top_k=10)
    assert [h.chunk.doc_id for h in answer.hits].count(SEED) >= 1
    assert not any(h.chunk.doc_id.startswith("web_") for h in answer.hits)
    # asked again, the known copy is recognised by its URL
    assert PageIngester(engine).ingest(url).status == "duplicate"


def test_two_sites_one_story(tmp_path: Path, site: NewsSite) -> None:
    settings = without_seed(tmp_path)
    first = site.add_article("/a/story.html", SEED, date_style="dateline")
    second = site.add_article("/b/story.html", SEED, date_style="jsonld")
    engine = Engine(settings).open(show_progress=False)
    ingester = PageIngester(engine)
    assert ingester.ingest(first).status == "added"
    copy = ingester.ingest(second)
    assert copy.status == "duplicate" and copy.doc_id == web_doc_id(first)
    assert engine.index.articles[web_doc_id(first)].other_urls == (second,)
    assert web_doc_id(second) not in engine.index.articles
    hits = engine.ask(QUESTION, top_k=10).hits
    story = [h for h in hits if h.chunk.section is Section.BODY and "8个地方" in h.chunk.text]
    assert len({h.chunk.doc_id for h in story}) == 1


def test_different_stories_are_not_copies() -> None:
    hasher = MinHasher()
    texts = [(SEEDS / f"{p.stem}.txt").read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]
    signatures = [hasher.signature(t) for t in texts]
    for i, one in enumerate(signatures):
        for other in signatures[i + 1 :]:
            assert one is not None and other is not None
            assert hasher.similarity(one, other) < 0.2


@pytest.mark.parametrize(
    ("route", "error"),
    [
        (Route(b"<html></html>", delay_s=3.0), "timed out"),
        (Route(b"x" * 5_000_000), "over the limit"),
        (Route(b"%PDF-1.4", content_type="application/pdf"), "not an HTML page"),
        (Route(status=500), "HTTP 500"),
        (Route("<html><body><nav><a href='/'>首页</a></nav></body></html>".encode()), "no article text"),
    ],
)
def test_bad_pages_fail_clearly_and_lose_nothing(
    fake_settings: Settings, site: NewsSite, route: Route, error: str
) -> None:
    fetch = fake_settings.fetch.model_copy(
        update={"allow_private": True, "host_delay_s": 0, "timeout_s": 0.5}
    )
    settings = fake_settings.model_copy(update={"fetch": fetch})
    engine = Engine(settings).open(show_progress=False)
    before, files = dict(engine.index.articles), corpus_bytes(settings)
    site.routes["/bad"] = route
    outcome = PageIngester(engine).try_ingest(site.url("/bad"))
    assert outcome.status == "failed" and error in (outcome.error or "")
    assert engine.index.articles == before and corpus_bytes(settings) == files


def test_copies_stored_before_are_never_cited_side_by_side(fake_settings: Settings) -> None:
    """Two copies already in the corpus (added directly, not through ingestion): an answer cites
    one of them."""
    engine = Engine(fake_settings).open(show_progress=False)
    text = (SEEDS / f"{SEED}.txt").read_text(encoding="utf-8")
    engine.add_document(NewDocument(doc_id="copy_of_000", text=text, url="https://elsewhere.example/x"))
    answer = engine.ask(QUESTION, top_k=10)
    body = [h for h in answer.hits if h.chunk.section is Section.BODY]
    texts = [h.chunk.text for h in body]
    assert len(texts) == len(set(texts))
    assert {h.chunk.doc_id for h in body} & {SEED, "copy_of_000"}
    assert not ({SEED, "copy_of_000"} <= {h.chunk.doc_id for h in body})


def test_story_signatures_kept_for_the_next_process(fake_settings: Settings, site: NewsSite) -> None:
    settings = fake_settings.model_copy(
        update={"fetch": fake_settings.fetch.model_copy(update={"allow_private": True, "host_delay_s": 0})}
    )
    engine = Engine(settings).open(show_progress=False)
    url = site.add_article("/copy.html", SEED, date_style="meta")
    assert PageIngester(engine).ingest(url).status == "duplicate"
    assert (settings.index_dir / "stories.npz").is_file()

    later = PageIngester(engine)
    signed: list[str] = []
    original = later.stories.hasher.signature
    later.stories.hasher.signature = lambda text: signed.append(text) or original(text)  # type: ignore[method-assign]
    other = site.add_article("/copy2.html", SEED, date_style="jsonld")
    assert later.ingest(other).status == "duplicate"
    assert len(signed) == 1  # the new page only: the stored articles' signatures were read back


def test_story_signatures_from_another_hasher_are_not_used() -> None:
    from qa.ingest.dedup import StoryIndex

    saved = StoryIndex(MinHasher(64, 5), 0.7).to_bytes()
    assert not StoryIndex(MinHasher(64, 4), 0.7).from_bytes(saved)
    assert not StoryIndex(MinHasher(128, 5), 0.7).from_bytes(saved)
    assert StoryIndex(MinHasher(64, 5), 0.7).from_bytes(saved)
    assert not StoryIndex(MinHasher(64, 5), 0.7).from_bytes(b"not an npz")


@pytest.mark.parametrize("declared", ["gbk", None, "utf-8"])  # utf-8: a wrong header, detected instead
def test_gbk_page(declared: str | None) -> None:
    title, page = article_html(SEED, date_style="dateline")
    gbk = page.decode("utf-8").replace('<meta charset="utf-8">', "").replace("©", "").encode("gbk")
    extracted = extract_page(gbk, "http://x/a", charset=declared)
    assert extracted.title == title and extracted.date == "2025-01-21"
    assert "胡志明市与中国8个地方保持着友好合作关系" in extracted.body


def test_a_portal_header_date_is_not_the_article_date() -> None:
    """Chinese portals print today's date in their header; teasers carry their own dates."""
    _, page = article_html(SEED, date_style="none")
    html = page.decode("utf-8").replace(
        "<header>", '<header><span class="today">2026年12月01日 星期二</span>', 1
    )
    html = html.replace("<li>", "<li><span>2024年05月06日</span>", 1)
    assert extract_page(html.encode(), "http://x/a").date is None
    dated = html.replace("</h1>", "</h1><p>2025年01月21日 15:44</p>", 1)
    assert extract_page(dated.encode(), "http://x/a").date == "2025-01-21"


def test_a_copy_stored_by_another_process_is_seen(tmp_path: Path, site: NewsSite) -> None:
    """Two engines on one index folder (two server workers, or `qa watch` beside a server)."""
    settings = without_seed(tmp_path)
    first = site.add_article("/a/story.html", SEED)
    second = site.add_article("/b/story.html", SEED, date_style="meta")
    one = Engine(settings).open(show_progress=False)
    other = Engine(settings).open(show_progress=False)
    assert PageIngester(one).ingest(first).status == "added"
    assert web_doc_id(first) not in other.index.articles  # its snapshot is older
    copy = PageIngester(other).ingest(second)
    assert (copy.status, copy.doc_id) == ("duplicate", web_doc_id(first))


def test_teasers_found_by_their_heading_alone_or_absent() -> None:
    _, page = article_html(SEED)
    html = (
        page.decode("utf-8")
        .replace('<div class="related-news">', "<section>", 1)
        .replace("</ul></div>", "</ul></section>", 1)
    )
    assert len(extract_page(html.encode(), "http://x/a").teasers) == 4
    start, end = html.index("<section>"), html.index("</section>") + len("</section>")
    bare = extract_page((html[:start] + html[end:]).encode(), "http://x/a")
    assert bare.teasers == () and "相关新闻" not in bare.text
