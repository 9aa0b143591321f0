"""Realistic saved pages, built by the project: an author's known text inside a platform's chrome.

Each template wraps a body (HTML) in what a saved page of that platform carries: navigation, a
repeated title and byline, reading time, like counters, share bars, subscribe prompts, comment
sections with other people's text, "previous/next" links, cookie and JavaScript notices and a
footer. `bench/cleaning.py` measures the cleaning on them; `sample_corpus/ines-varga/` was made
with them. Nothing here is copied from a real page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

_FENCE = re.compile(r"(^```[^\n]*\n.*?^```[ \t]*$)", re.M | re.S)
_BULLET = re.compile(r"^\s*[-*] ")
_NUMBER = re.compile(r"^\s*\d+\. ")
PLATFORMS = ("substack", "medium", "wordpress", "ghost", "hugo", "jekyll", "quarto")


@dataclass(frozen=True)
class Page:
    title: str
    author: str
    date: str  # "Jul 13, 2024"
    body_html: str
    site: str  # e.g. "ines.substack.com" or "inesvarga.dev"
    slug: str
    likes: int = 12
    comments: tuple[str, ...] = ("Great post, this saved my week.", "Could you write about backfills next?")


def markdown_to_html(text: str) -> str:
    """The HTML of the sample corpus's markdown-ish text (headings, lists, quotes, code, paragraphs)."""
    out = []
    for part in _FENCE.split(text.strip()):
        if _FENCE.fullmatch(part):
            lines = part.split("\n")
            language = lines[0][3:].strip()
            attr = f' class="language-{language}"' if language else ""
            out.append(f"<pre><code{attr}>{html.escape(chr(10).join(lines[1:-1]))}</code></pre>")
            continue
        for block in re.split(r"\n{2,}", part.strip()):
            out.append(_block(block.strip("\n")))
    return "\n".join(block for block in out if block)


def _block(block: str) -> str:
    lines = block.split("\n")
    if not block.strip():
        return ""
    if match := re.match(r"^(#{1,6}) (.*)$", block):
        level = len(match.group(1))
        return f"<h{level}>{_inline(match.group(2))}</h{level}>"
    if all(_BULLET.match(line) for line in lines):
        return "<ul>" + "".join("<li>" + _inline(_BULLET.sub("", line)) + "</li>" for line in lines) + "</ul>"
    if all(_NUMBER.match(line) for line in lines):
        return "<ol>" + "".join("<li>" + _inline(_NUMBER.sub("", line)) + "</li>" for line in lines) + "</ol>"
    if block.startswith(">"):
        inner = "\n".join(line[2:] if line.startswith("> ") else line.lstrip(">") for line in lines)
        return "<blockquote>" + markdown_to_html(inner) + "</blockquote>"
    return "<p>" + _inline(block).replace("\n", "<br>") + "</p>"


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', text)


def _comments(page: Page) -> str:
    return "".join(f'<div class="comment"><p>{html.escape(text)}</p><span>Reply</span></div>'
                   for text in page.comments)


def substack(page: Page) -> str:
    t, a = html.escape(page.title), html.escape(page.author)
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{t} - by {a}</title>
<meta name="generator" content="Substack"><script>window._preloads = {{}}</script></head><body>
<div class="topbar"><a href="/">{a}'s Notes</a><span>Subscribe</span><span>Sign in</span></div>
<article class="post">
<h1 class="post-title">{t}</h1>
<div class="post-meta"><p>{a}</p><p>{page.date}</p></div>
<p>{page.likes}</p><p>Share this post</p>
<div class="available-content"><div class="body markup">
{page.body_html}
<p>Thanks for reading {a}'s Notes! Subscribe for free to receive new posts and support my work.</p>
<p>Type your email…</p><p>Subscribe</p>
</div></div>
<p>{page.likes} Likes</p><p>Share</p>
<p>Copy link</p><p>Facebook</p><p>Email</p><p>Notes</p><p>More</p>
<h2>Discussion about this post</h2>
<p>Comments</p><p>Restacks</p>
{_comments(page)}
<h2>Ready for more?</h2><p>Subscribe</p>
</article>
<p>© 2024 {a}</p><p>Privacy ∙ Terms ∙ Collection notice</p><p>Start writing</p><p>Get the app</p>
<p>Substack is the home for great culture</p>
<noscript>This site requires JavaScript to run correctly. Please turn on JavaScript or unblock scripts</noscript>
</body></html>"""


def medium(page: Page) -> str:
    t, a = html.escape(page.title), html.escape(page.author)
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{t} | by {a} | Medium</title>
<meta property="al:ios:app_name" content="Medium"></head><body>
<div><span>Open in app</span><span>Sign up</span><span>Sign in</span><span>Write</span></div>
<article><div>
<p>Member-only story</p>
<h1>{t}</h1>
<div><p>{a}</p><p>Follow</p><p>6 min read</p><p>·</p><p>{page.date}</p></div>
<div><p>{page.likes * 30}</p><p>3</p><p>Listen</p><p>Share</p></div>
{page.body_html}
<div><p>{page.likes * 30}</p><p>3</p></div>
<p>Written by {a}</p><p>{page.likes * 20} Followers</p>
<p>Follow</p>
<h2>Responses (3)</h2>
<p>What are your thoughts?</p>
{_comments(page)}
<h2>More from {a}</h2>
<p>Recommended from Medium</p>
</div></article>
<p>Help Status About Careers Press Blog Privacy Terms Text to speech Teams</p>
</body></html>"""


def _blog_nav(page: Page) -> str:
    return ("<div class='site-title'><p>" + html.escape(page.author) + "</p></div>"
            "<ul class='menu-list'><li>Home</li><li>Writing</li><li>Talks</li><li>Now</li><li>Contact</li></ul>")


def wordpress(page: Page) -> str:
    t, a = html.escape(page.title), html.escape(page.author)
    return f"""<!DOCTYPE html><html><head><title>{t} – {a}</title><meta name="generator" content="WordPress 6.5">
</head><body><p>Skip to content</p>{_blog_nav(page)}
<main><article>
<h1 class="entry-title">{t}</h1>
<p>Posted on {page.date} by {a}</p>
<div class="entry-content">
{page.body_html}
<p>Share this:</p><ul><li>Twitter</li><li>Facebook</li><li>LinkedIn</li></ul>
<p>Like this:</p><p>Like Loading…</p>
</div>
<p>Categories: Engineering</p>
<p>← Previous post</p><p>Next post →</p>
<h2>{len(page.comments)} comments</h2>
{_comments(page)}
<h3>Leave a Reply</h3><p>Cancel reply</p>
</article></main>
<p>Proudly powered by WordPress</p>
<p>We use cookies to give you the best experience on our website. Accept</p>
</body></html>"""


def ghost(page: Page) -> str:
    t, a = html.escape(page.title), html.escape(page.author)
    return f"""<!DOCTYPE html><html><head><title>{t}</title><meta name="generator" content="Ghost 5.82">
</head><body>{_blog_nav(page)}<p>Sign in</p><p>Subscribe</p>
<main><article>
<p>{page.date}</p><p>5 min read</p>
<h1>{t}</h1>
<div class="gh-content">
{page.body_html}
</div>
<p>Sign up for more like this.</p><p>Enter your email</p><p>Subscribe</p>
<p>Read more</p>
</article></main>
<p>{a} © 2024</p><p>Powered by Ghost</p>
</body></html>"""


def hugo(page: Page) -> str:
    t, a = html.escape(page.title), html.escape(page.author)
    return f"""<!DOCTYPE html><html><head><title>{t} | {a}</title><meta name="generator" content="Hugo 0.125.0">
</head><body>{_blog_nav(page)}
<main>
<h1>{t}</h1>
<p>{page.date} · 4 min read</p>
{page.body_html}
<p>Tags: ml, pipelines</p>
<p>PreviousNext</p>
<p>Back to top</p>
</main>
<p>© 2024 {a} · Built with Hugo</p>
</body></html>"""


def jekyll(page: Page) -> str:
    t, a = html.escape(page.title), html.escape(page.author)
    return f"""<!DOCTYPE html><html><head><title>{t}</title></head><body>{_blog_nav(page)}
<div class="post">
<h1>{t}</h1>
<p>{page.date} • {a}</p>
{page.body_html}
<p>« Older</p><p>Newer »</p>
<p>Subscribe via RSS</p>
</div>
<p>Copyright © 2024 {a}. All rights reserved.</p>
</body></html>"""


def quarto(page: Page) -> str:
    t, a = html.escape(page.title), html.escape(page.author)
    return f"""<!DOCTYPE html><html><head><title>{a} - {t}</title><meta name="generator" content="quarto-1.4.550">
</head><body>{_blog_nav(page)}<p>Search</p>
<main>
<h1 class="title">{t}</h1>
<p>Author</p><p>{a}</p><p>Published</p><p>{page.date}</p>
{page.body_html}
<p>← Previous</p><p>Next →</p>
</main>
<p>Made with Quarto</p>
</body></html>"""


TEMPLATES: dict[str, Callable[[Page], str]] = {
    "substack": substack, "medium": medium, "wordpress": wordpress, "ghost": ghost, "hugo": hugo,
    "jekyll": jekyll, "quarto": quarto,
}


def page_url(platform: str, page: Page) -> str:
    if platform == "substack":
        return f"https://{page.site}/p/{page.slug}"
    if platform == "medium":
        return f"https://medium.com/@{page.site}/{page.slug}-3f9a1c2b7d4e"
    return f"https://{page.site}/posts/{page.slug}/"
