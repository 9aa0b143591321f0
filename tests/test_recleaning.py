"""Cleaning in the feature pipeline: the repeated-line detector, recorded removals, cleaner versions
that re-clean everything and re-embed only what changed, and search over folded styled letters.
Real embedded Postgres and the real embedding model."""

from __future__ import annotations

import psycopg
import pytest

import twin.features as features
from twin import cleaning
from twin.chunking import ChunkingPolicy
from twin.cleaning import Cleaned
from twin.documents import Category, RawDocument
from twin.embedding import Embedder
from twin.query import QueryFilters
from twin.raw_store import store_documents
from twin.retrieval import search

AUTHOR = "Noa Feld"
TWIN = "noa-feld"
MENU = "- Home\n- Essays\n- Reading list\n- Colophon"
PLUG = "I send a letter every other Sunday about building calm software teams."
SIGN_OFF = "Until next time, Noa"


def post(slug: str, text: str, *, site: str = "noafeld.net") -> RawDocument:
    content = f"{MENU}\n\n# {slug.title()}\n\n{text}\n\n{PLUG}\n\n{SIGN_OFF}"
    return RawDocument(AUTHOR, Category.ARTICLE, "blog", f"https://{site}/{slug}/", slug.title(), content, None)


TEXTS = {
    "standups": "Our standups got shorter the week we stopped reporting status and started asking for help.",
    "reviews": "A review comment should say what would change my mind, not only what I dislike.",
    "oncall": "The on-call week is lighter when every alert links to the page that explains it.",
    "estimates": "I estimate in ranges now, and the width of the range is the useful part.",
    "handoffs": "A handoff note answers three questions: what is done, what is not, and who to ask.",
}


def policy() -> ChunkingPolicy:
    return ChunkingPolicy(max_tokens=256)


def run_features(conn: psycopg.Connection, embedder: Embedder) -> tuple[features.StepCounts, ...]:
    return (features.clean_documents(conn, TWIN), features.chunk_documents(conn, TWIN, embedder, policy()),
            features.embed_chunks(conn, TWIN, embedder))


def test_repeated_menu_plug_and_sign_off_are_removed_and_recorded(conn: psycopg.Connection) -> None:
    docs = [post(slug, text) for slug, text in TEXTS.items()]
    docs.append(post("elsewhere", "A guest post on another site keeps its own words.", site="guests.example"))
    store_documents(conn, "test", docs, [])
    counts = features.clean_documents(conn, TWIN)
    assert counts.new == 6
    rows = dict(conn.execute("SELECT url, content FROM cleaned_documents").fetchall())
    for slug, text in TEXTS.items():
        # the menu and the plug repeat on 5 of 5 pages of noafeld.net; so does the sign-off, which
        # the detector cannot tell from a footer: it goes too (and is recorded; the raw keeps it)
        assert rows[f"https://noafeld.net/{slug}/"] == text
    guest = rows["https://guests.example/elsewhere/"]
    assert PLUG in guest and SIGN_OFF in guest and "Essays" in guest  # one page of a site: nothing repeats
    assert counts.details["removed_repeated_lines"] == 5 * 5  # Essays, Reading list, Colophon, plug, sign-off
    assert counts.details["removed_navigation_lines"] == 6  # "Home" is known chrome everywhere
    assert any("Essays" in note for note in counts.notes) and counts.notes[0].startswith("6x ")
    removed = conn.execute("SELECT removed FROM cleaned_documents WHERE url = 'https://noafeld.net/oncall/'").fetchone()[0]
    assert removed["lines"] == {"navigation": 1, "repeated": 5, "title": 1}
    assert SIGN_OFF in conn.execute("SELECT content FROM raw_documents WHERE url = 'https://noafeld.net/oncall/'").fetchone()[0]
    assert features.chrome_summary(conn, TWIN) == {"documents": 6, "documents_with_chrome": 6,
                                                   "chrome_lines_removed": 5 * 7 + 2}
    # a new page of the same site changes nothing else: the repeated lines are the same
    store_documents(conn, "test", [post("retros", "Retros work when the action items have owners.")], [])
    again = features.clean_documents(conn, TWIN)
    assert (again.new, again.changed, again.unchanged) == (1, 0, 6)
    assert features.clean_documents(conn, TWIN).as_metadata()["unchanged"] == 7


def test_a_cleaner_version_change_recleans_all_and_reembeds_only_what_changed(
    conn: psycopg.Connection, embedder: Embedder, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store_documents(conn, "test", [post(slug, text) for slug, text in TEXTS.items()], [])
    run_features(conn, embedder)
    vectors = conn.execute("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL").fetchone()[0]
    assert features.cleaning_pending(conn, TWIN) == 0

    original = cleaning.clean

    def new_rules(category: Category, content: str, **kwargs: object) -> Cleaned:
        result = original(category, content, **kwargs)  # type: ignore[arg-type]
        if "estimate in ranges" in result.text:
            result.text = result.text.replace("ranges now", "ranges these days")
        return result

    monkeypatch.setattr(cleaning, "CLEANER_VERSION", "clean-test-next")
    monkeypatch.setattr(cleaning, "clean", new_rules)
    assert features.cleaning_pending(conn, TWIN) == 5  # what a scheduled run asks before skipping
    cleaned, chunked, embedded = run_features(conn, embedder)
    assert (cleaned.new, cleaned.changed, cleaned.unchanged) == (0, 1, 4)
    cleaners = {row[0] for row in conn.execute("SELECT cleaner FROM cleaned_documents")}
    assert {cleaner.split("+")[0] for cleaner in cleaners} == {"clean-test-next"}
    assert (chunked.new, chunked.changed, chunked.unchanged) == (0, 1, 4)
    assert embedded.new + embedded.changed == 1 and embedded.unchanged == vectors - 1
    text = conn.execute("SELECT text FROM chunks WHERE url = 'https://noafeld.net/estimates/'").fetchone()[0]
    assert "ranges these days" in text
    assert features.cleaning_pending(conn, TWIN) == 0


def test_a_search_in_plain_letters_finds_a_styled_letter_document(conn: psycopg.Connection,
                                                                    embedder: Embedder) -> None:
    styled = RawDocument(AUTHOR, Category.POST, "linkedin", "https://www.linkedin.com/feed/update/urn:li:share:1", "",
                         "𝗭𝗲𝗻𝗠𝗟 𝗽𝗶𝗽𝗲𝗹𝗶𝗻𝗲𝘀 cache every step's output, so a rerun only computes the steps whose "
                         "inputs changed. 𝘛𝘩𝘢𝘵 𝘪𝘴 𝘵𝘩𝘦 𝘸𝘩𝘰𝘭𝘦 𝘵𝘳𝘪𝘤𝘬.", None)
    others = [RawDocument(AUTHOR, Category.POST, "linkedin", f"https://www.linkedin.com/feed/update/urn:li:share:{n}",
                          "", text, None) for n, text in enumerate(TEXTS.values(), start=2)]
    store_documents(conn, "test", [styled, *others], [])
    run_features(conn, embedder)
    [hit, *_] = search(conn, embedder, "ZenML pipeline step caching", k=3, filters=QueryFilters(twin=TWIN)).chunks
    assert hit.url == styled.url
    assert hit.text.startswith("ZenML pipelines cache every step's output") and "That is the whole trick." in hit.text
    keyword = conn.execute("SELECT url FROM chunks WHERE search_vector @@ plainto_tsquery('english', 'ZenML')").fetchall()
    assert keyword == [(styled.url,)]  # keyword search matches the folded text too
