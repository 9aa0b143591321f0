"""One normalization stage: every route turns the same page into the same cleaned text, chrome
and styled letters gone, the author's text and code kept. Bad input gets a clear outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mongomock
import psycopg

from tests.fixtures.exports import MediumPost, SubstackPost, build_medium_export, build_substack_export
from tests.test_s3_source import bucket, endpoint, s3  # noqa: F401  (pytest fixtures)
from twin.cleaning import clean, clean_prose, detector_lines, repeated_lines
from twin.documents import Category, RawDocument
from twin.embedding import Embedder
from twin.sources.articles import extract_article
from twin.sources.batch import SourceBatch, store_batch
from twin.sources.exports import read_export
from twin.sources.jsonl import parse_document
from twin.sources.mongodb import read_mongodb
from twin.sources.s3 import read_s3_prefix
from twin.sources.warehouse import read_warehouse_dump

AUTHOR = "Ada Byte"
TITLE = "Quiet Queues"
URL = "https://adabyte.substack.com/p/quiet-queues"

BODY_HTML = """<p>Most queues fail quietly. The <strong>𝗳𝗶𝘅</strong> is to make them <em>𝘭𝘰𝘶𝘥</em> before users notice, and to keep the ｆｕｌｌ history of every ﬁx.</p>
<h2>Three signals</h2>
<ol><li>Age of the oldest message</li><li>Messages per <code>consumer</code></li><li>Retries per minute</li></ol>
<p>Read the <a href="https://example.com/runbook">runbook</a> before paging anyone.</p>
<h3>A check</h3>
<pre><code class="language-python">def too_old(age_s: int) -&gt; bool:
    return age_s &gt; 300  # 𝗻𝗼𝘁 folded: code keeps every character
</code></pre>
<blockquote><p>Alerts without actions are noise.</p></blockquote>
<ul><li>dashboards</li><li>pagers</li></ul>
<table><tr><th>Signal</th><th>Threshold</th></tr><tr><td>Age</td><td>5 min</td></tr></table>
<p>Measure first, then tune.</p>"""

CHROME_TOP = f"""<h1>{TITLE}</h1><p>By {AUTHOR}</p><p>Jul 13, 2024 · 4 min read</p><p>12</p><p>Share this post</p>"""
CHROME_BOTTOM = """<p>Thanks for reading Ada's Notes! Subscribe for free to receive new posts and support my work.</p>
<p>12 Likes</p><p>Share</p><p>Copy link</p><p>Facebook</p><p>Email</p><p>Notes</p><p>More</p>
<h2>Discussion about this post</h2><p>Comments</p><p>Restacks</p>
<p>Great post! I would add consumer lag as a fourth signal.</p><p>Reply</p>
<p>© 2024 Ada Byte · Privacy ∙ Terms ∙ Collection notice</p>"""

PAGE_HTML = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{TITLE} - by {AUTHOR}</title>
<meta property="og:title" content="{TITLE}"><meta property="og:type" content="article">
<link rel="canonical" href="{URL}"><script>window._preloads = {{}}</script></head><body>
<nav><a href="/">Home</a><a href="/archive">Archive</a><a href="/about">About</a></nav>
<p>This site requires JavaScript to run correctly. Please turn on JavaScript or unblock scripts</p>
<article>{CHROME_TOP}{BODY_HTML}{CHROME_BOTTOM}</article>
<footer><p>Substack is the home for great culture</p></footer></body></html>"""

PAGE_MARKDOWN = f"""# {TITLE}

By {AUTHOR}

Jul 13, 2024 · 4 min read

Share this post

Most queues fail quietly. The **𝗳𝗶𝘅** is to make them *𝘭𝘰𝘶𝘥* before users notice, and to keep the ｆｕｌｌ history of every ﬁx.

## Three signals

1. Age of the oldest message
2. Messages per `consumer`
3. Retries per minute

Read the [runbook](https://example.com/runbook) before paging anyone.

### A check

```python
def too_old(age_s: int) -> bool:
    return age_s > 300  # 𝗻𝗼𝘁 folded: code keeps every character
```

> Alerts without actions are noise.

- dashboards
- pagers

| Signal | Threshold |
|---|---|
| Age | 5 min |

Measure first, then tune.

Share

Copy link

Facebook

## Discussion about this post

Great post! I would add consumer lag as a fourth signal.

© 2024 Ada Byte · Privacy ∙ Terms ∙ Collection notice
"""

EXPECTED = """Most queues fail quietly. The fix is to make them loud before users notice, and to keep the full history of every fix.

## Three signals

1. Age of the oldest message
2. Messages per consumer
3. Retries per minute

Read the runbook before paging anyone.

### A check

```python
def too_old(age_s: int) -> bool:
    return age_s > 300  # 𝗻𝗼𝘁 folded: code keeps every character
```

> Alerts without actions are noise.

- dashboards
- pagers

Signal | Threshold
Age | 5 min

Measure first, then tune."""


def cleaned(doc: RawDocument) -> str:
    return clean(doc.category, doc.content, title=doc.title, author=doc.author).text


def jsonl_line(content: str, url: str = URL) -> str:
    return json.dumps({"author": AUTHOR, "category": "article", "platform": "substack", "url": url,
                       "title": TITLE, "content": content, "published_at": "Jul 13, 2024"}, ensure_ascii=False)


def test_one_page_down_every_route_gives_the_same_cleaned_text(
    tmp_path: Path, conn: psycopg.Connection, s3: Any, bucket: str,  # noqa: F811
) -> None:
    routes: dict[str, RawDocument] = {}
    routes["jsonl html"] = parse_document(jsonl_line(PAGE_HTML), 1_000_000)
    routes["jsonl markdown"] = parse_document(jsonl_line(PAGE_MARKDOWN), 1_000_000)
    routes["crawl"] = extract_article(PAGE_HTML, URL, AUTHOR)
    medium = build_medium_export(tmp_path, [MediumPost("2024-07-13_Quiet-Queues-1a2b3c4d5e6f", TITLE,
                                                       f"<h3>{TITLE}</h3>{BODY_HTML}", "2024-07-13T09:00:00Z",
                                                       "https://medium.com/@adabyte/quiet-queues-1a2b3c4d5e6f")])
    [routes["medium export"]] = read_export(medium, AUTHOR).documents
    substack = build_substack_export(tmp_path, [SubstackPost("1.quiet-queues", "2024-07-13T09:00:00Z", TITLE,
                                                             BODY_HTML + CHROME_BOTTOM)])
    [routes["substack export"]] = read_export(substack, AUTHOR).documents
    s3.put_object(Bucket=bucket, Key="pages/quiet.jsonl", Body=(jsonl_line(PAGE_HTML) + "\n").encode())
    [[routes["s3"]]] = [batch.documents for batch in read_s3_prefix(s3, f"s3://{bucket}/pages", workdir=tmp_path)]
    mongo = mongomock.MongoClient()["twin"]
    mongo.users.insert_one({"_id": "u1", "first_name": "Ada", "last_name": "Byte"})
    mongo.articles.insert_one({"_id": "a1", "platform": "substack", "link": URL, "author_id": "u1",
                               "content": {"Title": TITLE, "Content": PAGE_HTML}})
    [[routes["mongodb"]]] = [batch.documents for batch in read_mongodb(mongo)]
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "UserDocument.json").write_text(json.dumps([{"_id": "u1", "first_name": "Ada", "last_name": "Byte"}]))
    (dump / "ArticleDocument.json").write_text(json.dumps([
        {"_id": "a1", "platform": "substack", "link": URL, "author_id": "u1", "author_full_name": AUTHOR,
         "content": {"Title": TITLE, "Subtitle": "", "Content": PAGE_MARKDOWN}}], ensure_ascii=False))
    [[routes["warehouse dump"]]] = [batch.documents for batch in read_warehouse_dump(dump)]

    results = {route: cleaned(doc) for route, doc in routes.items()}
    assert results == {route: EXPECTED for route in routes}
    assert {doc.title for doc in routes.values()} == {TITLE}


def test_styled_letters_are_folded_in_prose_and_kept_in_code() -> None:
    text = clean_prose("𝗭𝗲𝗻𝗠𝗟 and 𝘪𝘵𝘢𝘭𝘪𝘤 ｆｕｌｌｗｉｄｔｈ ﬁle `𝗰𝗼𝗱𝗲`\n\n```\nx = '𝗯𝗼𝗹𝗱'  # ﬁ\n```")
    assert text == "ZenML and italic fullwidth file 𝗰𝗼𝗱𝗲\n\n```\nx = '𝗯𝗼𝗹𝗱'  # ﬁ\n```"
    code = "name = '𝗭𝗲𝗻𝗠𝗟'\u200b\n"
    assert clean(Category.REPOSITORY, code).text == code.strip("\n")  # repositories keep every character


def test_zero_width_and_bidi_controls_go_and_right_to_left_text_stays() -> None:
    text = clean_prose("ab\u200bc\u200e d\u202eef\u2066g\u2069 \ufeffשלום עולם and مرحبا بالعالم, Ελληνικά, 日本語")
    assert text == "abc defg שלום עולם and مرحبا بالعالم, Ελληνικά, 日本語"


def test_each_chrome_family_goes_and_the_author_text_stays() -> None:
    author_lines = ["I ship small changes and measure them.", "Next, we add an index on the hot column.",
                    "Follow the data, not the dashboard.", "By now the backlog was empty."]
    families = {
        "share": ["Share this post", "Copy link", "Facebook", "Share on Twitter", "Share this:"],
        "subscribe": ["Subscribe", "Sign in", "Type your email...", "Ready for more?",
                      "Thanks for reading Ada's Notes! Subscribe for free to receive new posts and support my work."],
        "counter": ["12", "1.2K", "5 min read", "12 Likes"],
        "footer": ["© 2024 Ada Byte · Privacy ∙ Terms ∙ Collection notice", "Proudly powered by WordPress",
                   "Built with Hugo", "Made with Quarto", "Powered by Ghost"],
        "notice": ["This site requires JavaScript to run correctly. Please turn on JavaScript or unblock scripts",
                   "We use cookies to improve your experience. Accept"],
        "navigation": ["PreviousNext", "← Previous post", "Next post →", "Skip to content", "Read more"],
        "byline": ["Written by Ada Byte", "By Ada Byte", "Published in Better Queues"],
        "dateline": ["Jul 13, 2024"],
    }
    for family, chrome in families.items():
        text = "\n\n".join(author_lines[:2] + chrome + author_lines[2:])
        result = clean(Category.ARTICLE, text, title="Queues", author=AUTHOR)
        assert result.text == "\n\n".join(author_lines), family
        assert result.removed[family] >= 1 and sum(result.removed.values()) == len(chrome), family


def test_comment_section_in_the_second_half_is_cut_with_what_follows() -> None:
    text = "\n\n".join([f"Paragraph {n} of the author's own argument." for n in range(6)]
                       + ["Discussion about this post", "Great post!", "I disagree with point two."])
    result = clean(Category.ARTICLE, text)
    assert result.text.endswith("Paragraph 5 of the author's own argument.")
    assert result.removed == {"comments": 1, "tail": 2}


def test_title_repeated_at_the_top_goes_but_a_post_keeps_its_first_line() -> None:
    assert clean(Category.ARTICLE, "# Quiet Queues\n\nBody text here.", title="Quiet Queues").text == "Body text here."
    post = "Set a lock_timeout before every migration.\n\nYour checkout page will thank you."
    assert clean(Category.POST, post, title="Set a lock_timeout before every migration.").text == post


def test_page_that_is_only_chrome_is_rejected_with_that_reason(conn: psycopg.Connection) -> None:
    only_chrome = "<p>Share this post</p><p>Subscribe</p><p>Sign in</p><p>© 2024 Ada Byte</p>"
    try:
        parse_document(jsonl_line(only_chrome), 1_000_000)
    except ValueError as exc:
        reason = str(exc)
    assert reason.startswith("content is only page chrome, nothing of the author's text (")
    assert "share 1" in reason and "subscribe 2" in reason and "footer 1" in reason
    batch = SourceBatch(source="https://example.com/feed")
    batch.documents.append(RawDocument(AUTHOR, Category.ARTICLE, "blog", "https://example.com/only-chrome", "",
                                       only_chrome, None))
    summary = store_batch(conn, batch)
    assert summary.accepted == 0 and len(summary.rejected) == 1
    assert summary.rejected[0].reason.startswith("https://example.com/only-chrome: content is only page chrome")
    assert conn.execute("SELECT count(*) FROM raw_documents").fetchone()[0] == 0
    stored = conn.execute("SELECT line, reason FROM import_rejections").fetchone()
    assert stored[0] == "https://example.com/only-chrome" and "only page chrome" in stored[1]


def test_repeated_menu_is_found_and_a_rare_line_is_not() -> None:
    menu = "- Home\n- Writing\n- Talks\n- Contact"
    pages = [f"{menu}\n\nPost {n} says something of its own, number {n}.\n\nShared idea in two posts."
             if n < 2 else f"{menu}\n\nPost {n} says something of its own, number {n}." for n in range(6)]
    found = repeated_lines([detector_lines(clean(Category.ARTICLE, page).text) for page in pages])
    assert found == {"writing", "talks", "contact"}  # "Home" is known chrome already; 2 of 6 is not enough
    assert repeated_lines([detector_lines(clean(Category.ARTICLE, page).text) for page in pages[:2]]) == set()


def test_ten_megabytes_of_nested_markup_is_refused_and_a_megabyte_of_it_read() -> None:
    def nested(depth: int) -> str:
        return "<div>" * depth + "<p>deep text survives</p>" + "</div>" * depth

    try:
        parse_document(jsonl_line(nested(1_000_000)), 1_000_000)
    except ValueError as exc:
        assert "over the 1.0 MB limit" in str(exc)  # the size limit answers before any parsing
    else:
        raise AssertionError("10 MB of markup was accepted")
    page = nested(90_000)  # just under the default 1 MB limit: 90,000 levels deep
    doc = parse_document(jsonl_line(page), 1_000_000)  # the converter walks it without recursion
    assert cleaned(doc) == "deep text survives"


def test_broken_html_gives_its_text() -> None:
    broken = "<p>First <b>bold <i>both</p><li>item one<li>item two<p>Last &amp copy &#xZZ; <unclosed"
    # as a browser reads it: the unclosed <li> holds the last <p>; an unterminated tag stays text
    assert clean_prose(broken) == "First bold both\n\n- item one\n- item two\nLast & copy &#xZZ; <unclosed"


def test_the_cleaning_benchmark_in_quick_mode_meets_its_quality_targets(embedder: Embedder) -> None:
    from bench.cleaning import build_corpus, clean_corpus, measure, new_cleaner

    samples = build_corpus(24)
    assert len({sample.platform for sample in samples}) >= 4
    figures = measure(samples, clean_corpus(samples, new_cleaner, detector=True), embedder.count_tokens)
    assert figures["chunks_with_chrome_pct"] <= 1.0 and figures["prose_chunks_with_styled_letters"] == 0
    assert figures["author_lines_kept_pct"] >= 99.0 and figures["kept_lines_that_are_the_authors_pct"] >= 98.0


def test_one_date_parser_reads_the_common_forms_and_names_what_it_cannot() -> None:
    from datetime import date

    from twin.sources.text import parse_date_field

    def parse_published_at(value: object):
        return parse_date_field("published_at", value)

    july = date(2024, 7, 13)
    for value in ("2024-07-13", "2024-07-13T09:30:00Z", "2024-07-13T09:30:00+02:00", "Sat, 13 Jul 2024 09:30:00 GMT",
                  "Jul 13, 2024", "July 13, 2024", "July 13th, 2024", "13-Jul-2024", "13 July 2024", "2024/07/13",
                  "07/13/2024", "7/13/24, 9:30 AM", "Sat, 13 Jul 2024"):
        assert parse_published_at(value) == july, value
    assert parse_published_at("") is None and parse_published_at(None) is None
    for value, reason in (("last tuesday", "published_at 'last tuesday' is not a date"),
                          (20240713, "published_at 20240713 is not a date string")):
        try:
            parse_published_at(value)
        except ValueError as exc:
            assert str(exc).startswith(reason), value
        else:
            raise AssertionError(f"{value!r} was read as a date")


def test_an_authors_one_word_headings_are_not_taken_for_chrome() -> None:
    text = "Intro text here.\n\n## Discussion\n\nWhat we found.\n\n## Notes\n\nA note.\n\n## More\n\nThe end."
    assert clean(Category.ARTICLE, text).text == text
