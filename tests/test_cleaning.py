from twin.cleaning import clean_code, clean_document, clean_prose, clean_title
from twin.documents import Category


def test_html_becomes_paragraphs_without_tags_scripts_or_entities() -> None:
    raw = ("<html><head><style>p{}</style></head><body><h2>Kelp &amp; urchins</h2>"
           "<p>Sea <b>otters</b> eat urchins.</p><script>alert(1)</script><p>Forests recover.</p></body></html>")
    assert clean_prose(raw) == "## Kelp & urchins\n\nSea otters eat urchins.\n\nForests recover."


def test_markdown_noise_and_emoji_go_but_text_headings_and_paragraphs_stay() -> None:
    raw = ("# Shipping 🚀\n\nRead **the** [guide](https://example.com/a_(b)) and ![img](x.png) "
           "the `VACUUM` docs ✅👍🏽.\n\n\n\n- one   item\n- two\n\n---\n\nDone 🎉")
    assert clean_prose(raw) == "# Shipping\n\nRead the guide and the VACUUM docs.\n\n- one item\n- two\n\nDone"


def test_snake_case_and_arithmetic_are_not_mistaken_for_emphasis() -> None:
    assert clean_prose("use valid_from_date and 2 * 3 * 4") == "use valid_from_date and 2 * 3 * 4"


def test_fenced_code_inside_prose_keeps_its_indentation() -> None:
    raw = "Try this:\n\n```python\ndef f():\n    return  1\n```\n\nThen  relax."
    assert clean_prose(raw) == "Try this:\n\n```python\ndef f():\n    return  1\n```\n\nThen relax."


def test_code_keeps_every_space_and_only_normalizes_line_endings() -> None:
    code = "def f(x):\r\n    if x:\r\n\treturn   x  \r\n"
    assert clean_code(code) == "def f(x):\n    if x:\n\treturn   x  "
    assert clean_document(Category.REPOSITORY, code) == clean_code(code)


def test_content_that_is_only_markup_or_emoji_cleans_to_empty() -> None:
    assert clean_document(Category.POST, "<div><br/></div> 🚀🚀 ") == ""


def test_titles_lose_emoji_and_extra_spaces() -> None:
    assert clean_title("  Launch   week 🎮 numbers ") == "Launch week numbers"
