"""The bots' markdown as each channel shows it."""

from __future__ import annotations

import pytest

from channels.base import TextFormat
from channels.markdown import RichText, Span, Style, parse_markdown, render_rich, to_format

HTML = TextFormat.TELEGRAM_HTML
WA = TextFormat.WHATSAPP
PLAIN = TextFormat.PLAIN


@pytest.mark.parametrize(
    ("source", "html", "whatsapp", "plain"),
    [
        (
            "**bold** and __bold__",
            "<b>bold</b> and <b>bold</b>",
            "*bold* and *bold*",
            "bold and bold",
        ),
        ("*it* and _it_", "<i>it</i> and <i>it</i>", "_it_ and _it_", "it and it"),
        ("~~gone~~", "<s>gone</s>", "~gone~", "gone"),
        ("use `a<b`", "use <code>a&lt;b</code>", "use `a<b`", "use a<b"),
        (
            "```py\nif a < b:\n    pass\n```",
            '<pre><code class="language-py">if a &lt; b:\n    pass</code></pre>',
            "```if a < b:\n    pass```",
            "if a < b:\n    pass",
        ),
        (
            "[docs](https://x.io/?a=1&b=2)",
            '<a href="https://x.io/?a=1&amp;b=2">docs</a>',
            "docs (https://x.io/?a=1&b=2)",
            "docs (https://x.io/?a=1&b=2)",
        ),
        (
            "<https://x.io>",
            '<a href="https://x.io">https://x.io</a>',
            "https://x.io",
            "https://x.io",
        ),
        ("# Title\n\ntext", "<b>Title</b>\n\ntext", "*Title*\n\ntext", "Title\n\ntext"),
        ("- one\n- two", "• one\n• two", "• one\n• two", "• one\n• two"),
        ("3. three\n4. four", "3. three\n4. four", "3. three\n4. four", "3. three\n4. four"),
        ("- a\n  - b", "• a\n  • b", "• a\n  • b", "• a\n  • b"),
        (
            "> said\n> twice",
            "<blockquote>said\ntwice</blockquote>",
            "> said\n> twice",
            "said\ntwice",
        ),
        (
            "*it **both** it*",
            "<i>it <b>both</b> it</i>",
            "_it *both* it_",
            "it both it",
        ),
        (
            "**[bold link](https://x.io) more**",
            '<b><a href="https://x.io">bold link</a> more</b>',
            "*bold link (https://x.io) more*",
            "bold link (https://x.io) more",
        ),
        # Raw HTML is text: escaped for Telegram, never interpreted.
        (
            '<b>hi</b> <a href="javascript:x">x</a> & co',
            '&lt;b&gt;hi&lt;/b&gt; &lt;a href="javascript:x"&gt;x&lt;/a&gt; &amp; co',
            '<b>hi</b> <a href="javascript:x">x</a> & co',
            '<b>hi</b> <a href="javascript:x">x</a> & co',
        ),
        ("5 > 3 & 2 < 4", "5 &gt; 3 &amp; 2 &lt; 4", "5 > 3 & 2 < 4", "5 > 3 & 2 < 4"),
        ("line one\nline two", "line one\nline two", "line one\nline two", "line one\nline two"),
        ("snake_case_name", "snake_case_name", "snake_case_name", "snake_case_name"),
        (
            "![chart](https://x.io/c.png)",
            '<a href="https://x.io/c.png">chart</a>',
            "chart (https://x.io/c.png)",
            "chart (https://x.io/c.png)",
        ),
        ("a\n\n---\n\nb", "a\n\n———\n\nb", "a\n\n———\n\nb", "a\n\n———\n\nb"),
        (
            "emoji 👍🏽 **ok** 🇧🇷",
            "emoji 👍🏽 <b>ok</b> 🇧🇷",
            "emoji 👍🏽 *ok* 🇧🇷",
            "emoji 👍🏽 ok 🇧🇷",
        ),
    ],
)
def test_markdown_in_each_format(source: str, html: str, whatsapp: str, plain: str) -> None:
    assert to_format(source, HTML) == html
    assert to_format(source, WA) == whatsapp
    assert to_format(source, PLAIN) == plain


def test_javascript_links_are_not_links() -> None:
    # markdown-it refuses javascript: URLs, so they stay text and never become an <a>.
    assert "<a" not in to_format("[x](javascript:alert(1))", HTML)


def test_markdown_channels_get_the_source_unchanged() -> None:
    source = "**b** <i>raw</i> [l](u)"
    assert to_format(source, TextFormat.MARKDOWN) == source


def test_whatsapp_markers_touch_the_text() -> None:
    # "*bold *" is not bold on WhatsApp: spaces at the edges go outside the markers.
    rich = RichText((Span(" bold ", Style(bold=True)), Span("next")))
    assert render_rich(rich, WA) == " *bold* next"
    assert to_format("***both***", WA) == "*_both_*"


def test_slices_keep_styles() -> None:
    rich = parse_markdown("plain **bold text** end")
    assert rich.text == "plain bold text end"
    part = rich.slice(8, 15)
    assert part.text == "ld text"
    assert all(span.style.bold for span in part.spans)
