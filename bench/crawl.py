"""Crawler benchmark against a local HTTP server; prints its figures as JSON.

  (a) throughput: one archive page listing --pages generated articles, crawled with the per-host
      limit off (pages/s end to end), and extraction alone on the same HTML (pages/s);
  (b) politeness: --limited-pages articles crawled with per_host_delay_s = --delay; the gaps between
      request arrivals measured by the server must all be >= the delay.

Run: .venv/bin/python bench/crawl.py [--pages 300] [--delay 0.25] [--limited-pages 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from twin.database import Database, embedded_postgres_dir, start_embedded_postgres, stop_embedded_postgres  # noqa: E402
from twin.sources.articles import extract_article  # noqa: E402
from twin.sources.crawl import crawl  # noqa: E402
from twin.sources.fetcher import CrawlSettings  # noqa: E402

PARAGRAPH = ("Small diffs are not about speed; they are about attention. When a change does one thing, the "
             "reviewer can ask the only question that matters: is this the right thing to do? ")


def article_html(number: int) -> bytes:
    """A Medium-like article page of about 1,000 words with the usual chrome around it."""
    paragraphs = "".join(f"<p>{PARAGRAPH * 3} (part {part} of article {number})</p>" for part in range(12))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Article {number} | Medium</title>"
            f"<meta property='og:type' content='article'><meta property='og:title' content='Article {number}'>"
            f"<meta property='article:published_time' content='2024-03-{number % 28 + 1:02d}T10:00:00Z'>"
            f"<script>window.state = {{\"id\": {number}}}</script></head><body>"
            f"<nav><a href='/'>Home</a><a href='/signin'>Sign in</a></nav><main><article>"
            f"<h1>Article {number}</h1><div class='speechify-ignore'>Ada Byte · 5 min read · Share</div>"
            f"<section>{paragraphs}<h2>Takeaways</h2><ul><li>one</li><li>two</li></ul></section>"
            f"</article></main><footer>Written by Ada Byte</footer></body></html>").encode()


def archive_html(count: int) -> bytes:
    links = "".join(f"<article><h2><a href='/posts/{n}'>Article {n}</a></h2></article>" for n in range(count))
    return f"<html><head><title>Archive</title></head><body><main>{links}</main></body></html>".encode()


class Server:
    """Serves /archive (listing `count` articles) and /posts/N; records request arrival times."""

    def __init__(self, count: int) -> None:
        self.arrivals: list[float] = []
        pages = {f"/posts/{n}": article_html(n) for n in range(count)}
        pages["/archive"] = archive_html(count)
        arrivals = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real sites do
            disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms delayed ACK

            def do_GET(self) -> None:  # noqa: N802
                arrivals.append(time.monotonic())
                body = pages.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.pages = pages
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def throughput(conn: psycopg.Connection, pages: int) -> dict[str, object]:
    server = Server(pages)
    try:
        settings = CrawlSettings(per_host_delay_s=0, retries=0)
        stats: dict[str, int] = {}
        started = time.perf_counter()
        batch = crawl(conn, f"{server.base}/archive", "Ada Byte", settings=settings, max_pages=pages, stats=stats)
        seconds = time.perf_counter() - started
        assert len(batch.documents) == pages and not batch.rejections, batch.rejections[:3]

        bodies = [server.pages[f"/posts/{n}"].decode() for n in range(pages)]
        started = time.perf_counter()
        for n, body in enumerate(bodies):
            extract_article(body, f"{server.base}/posts/{n}", "Ada Byte")
        extract_seconds = time.perf_counter() - started
    finally:
        server.close()
    page_kb = sum(len(body) for body in bodies) / len(bodies) / 1000
    return {
        "pages": pages,
        "page_kb": round(page_kb, 1),
        "crawl_seconds": round(seconds, 3),
        "crawl_pages_per_s": round(pages / seconds, 1),
        "extract_only_pages_per_s": round(pages / extract_seconds, 1),
        "requests": stats["fetched"] + 1,  # + robots.txt
    }


def politeness(conn: psycopg.Connection, pages: int, delay: float) -> dict[str, object]:
    server = Server(pages)
    try:
        settings = CrawlSettings(per_host_delay_s=delay, retries=0)
        started = time.perf_counter()
        crawl(conn, f"{server.base}/archive", "Ada Byte", settings=settings, max_pages=pages)
        seconds = time.perf_counter() - started
    finally:
        server.close()
    gaps = [later - earlier for earlier, later in pairwise(server.arrivals)]
    return {
        "per_host_delay_s": delay,
        "requests": len(server.arrivals),
        "min_gap_s": round(min(gaps), 4),
        "mean_gap_s": round(sum(gaps) / len(gaps), 4),
        "max_gap_s": round(max(gaps), 4),
        "limit_held": min(gaps) >= delay,
        "crawl_seconds": round(seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--delay", type=float, default=0.25)
    parser.add_argument("--limited-pages", type=int, default=8)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="twin-bench-crawl-"))
    url = start_embedded_postgres(embedded_postgres_dir(home))
    try:
        Database(url).ensure_schema()
        with Database(url).connect() as conn:
            figures: dict[str, Any] = {
                "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
                "throughput_no_rate_limit": throughput(conn, args.pages),
                "rate_limit": politeness(conn, args.limited_pages, args.delay),
            }
    finally:
        stop_embedded_postgres(embedded_postgres_dir(home))
    print(json.dumps(figures, indent=2))
    if not figures["rate_limit"]["limit_held"]:
        sys.exit("the per-host rate limit did not hold")


if __name__ == "__main__":
    main()
