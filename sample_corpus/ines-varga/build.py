"""Builds Ines Varga's sample: a Handbook warehouse dump of saved pages and a LinkedIn Shares.csv.

Ines Varga is fictional and her text (texts.py) was written for this project. Her Substack and
Medium articles are saved HTML pages with their chrome (bench/pages.py templates); her blog posts
are stored as the Handbook's crawler stores a page, as markdown text with the site's menu, a
newsletter plug and the footer; her LinkedIn posts use styled unicode letters for emphasis.
Run `python sample_corpus/ines-varga/build.py` after editing texts.py; the demo reads the output.
"""

from __future__ import annotations

import csv
import json
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE)]

from bench.pages import Page, markdown_to_html, medium, page_url, substack  # noqa: E402
from texts import BLOG, LINKEDIN, MEDIUM, SUBSTACK  # noqa: E402

AUTHOR = "Ines Varga"
USER_ID = str(uuid.UUID("7a1d3c52-0f4e-4b8a-9c61-3e2f5d7b9a10"))
BLOG_SITE = "inesvarga.dev"


def blog_text(title: str, date: str, body: str) -> str:
    """A blog page as the Handbook's article crawler keeps it: html2text-style markdown."""
    return (f"[{AUTHOR}](/)\n\n  * [Home](/)\n  * [Writing](/writing/)\n  * [Talks](/talks/)\n"
            f"  * [Now](/now/)\n  * [Contact](/contact/)\n\n# {title}\n\n{date} · 4 min read\n\n{body}\n\n"
            "I write one email a month about shipping machine learning systems. "
            "[Join the letter](/letter/) or browse the archive on the Writing page.\n\n"
            "Tags: mlops\n\n[PreviousNext](/)\n\n© 2024 Ines Varga · Built with Hugo\n")


def article(number: int, platform: str, title: str, subtitle: str, content: str, link: str) -> dict[str, object]:
    return {"_id": str(uuid.uuid5(uuid.NAMESPACE_URL, link)), "platform": platform, "link": link,
            "author_id": USER_ID, "author_full_name": AUTHOR,
            "content": {"Title": title, "Subtitle": subtitle, "Content": content, "language": "en"}}


def main() -> None:
    articles = []
    for index, (title, subtitle, date, slug, body) in enumerate(SUBSTACK):
        page = Page(title, AUTHOR, date, markdown_to_html(body), "inesvarga.substack.com", slug, likes=9 + index)
        articles.append(article(index, "substack", title, subtitle, substack(page), page_url("substack", page)))
    for index, (title, subtitle, date, slug, body) in enumerate(MEDIUM):
        page = Page(title, AUTHOR, date, markdown_to_html(body), "inesvarga", slug, likes=4 + index)
        articles.append(article(index, "medium", title, subtitle, medium(page), page_url("medium", page)))
    for index, (title, _, date, slug, body) in enumerate(BLOG):
        link = f"https://{BLOG_SITE}/posts/{slug}/"
        articles.append(article(index, "blog", title, "", blog_text(title, date, body), link))
    warehouse = HERE / "warehouse"
    warehouse.mkdir(exist_ok=True)
    files = {"UserDocument.json": [{"_id": USER_ID, "first_name": "Ines", "last_name": "Varga"}],
             "ArticleDocument.json": articles, "PostDocument.json": [], "RepositoryDocument.json": []}
    for name, items in files.items():
        (warehouse / name).write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    linkedin = HERE / "linkedin"
    linkedin.mkdir(exist_ok=True)
    with (linkedin / "Shares.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Date", "ShareLink", "ShareCommentary", "SharedUrl", "MediaUrl", "Visibility"])
        for date, link, text in LINKEDIN:
            writer.writerow([date, link, text, "", "", "MEMBER_NETWORK"])


if __name__ == "__main__":
    main()
