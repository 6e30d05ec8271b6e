"""Telegram HTML from the bots' markdown: our markdown-it-py renderer against
telegramify-markdown (text plus entities, turned into the same HTML subset).

Run: ``.venv/bin/pip install telegramify-markdown``, then
``.venv/bin/python -m bench.markdown_comparison``. Prints, per converter, the
cases of a table it gets right and microseconds per message.
"""

from __future__ import annotations

import html
import timeit

import telegramify_markdown

from channels.base import TextFormat
from channels.markdown import to_format

CASES = [
    ("**bold**", "<b>bold</b>"),
    ("__bold__", "<b>bold</b>"),
    ("*it*", "<i>it</i>"),
    ("~~s~~", "<s>s</s>"),
    ("`a<b`", "<code>a&lt;b</code>"),
    ("[l](https://x.io/?a=1&b=2)", '<a href="https://x.io/?a=1&amp;b=2">l</a>'),
    ("# Title", "<b>Title</b>"),
    ("- one\n- two", "• one\n• two"),
    ("> q", "<blockquote>q</blockquote>"),
    ("```py\nx<1\n```", '<pre><code class="language-py">x&lt;1</code></pre>'),
    ("<b>raw</b> & co", "&lt;b&gt;raw&lt;/b&gt; &amp; co"),
    ("5 > 3", "5 &gt; 3"),
]

_TAGS = {
    "bold": ("<b>", "</b>"),
    "italic": ("<i>", "</i>"),
    "strikethrough": ("<s>", "</s>"),
    "underline": ("<u>", "</u>"),
    "code": ("<code>", "</code>"),
    "blockquote": ("<blockquote>", "</blockquote>"),
}


def telegramify_html(source: str) -> str:
    """telegramify-markdown's text and entities as Telegram HTML (UTF-16 offsets)."""
    text, entities = telegramify_markdown.convert(source)
    units = text.encode("utf-16-le")
    opens: dict[int, list[str]] = {}
    closes: dict[int, list[str]] = {}
    for e in entities:
        if e.type == "text_link":
            pair = (f'<a href="{html.escape(e.url or "")}">', "</a>")
        elif e.type == "pre":
            lang = f' class="language-{e.language}"' if e.language else ""
            pair = (f"<pre><code{lang}>", "</code></pre>") if lang else ("<pre>", "</pre>")
        else:
            pair = _TAGS.get(e.type, ("", ""))
        opens.setdefault(e.offset, []).append(pair[0])
        closes.setdefault(e.offset + e.length, []).insert(0, pair[1])
    out: list[str] = []
    for unit in range(0, len(units) // 2 + 1):
        out.extend(closes.get(unit, []))
        out.extend(opens.get(unit, []))
        if unit < len(units) // 2:
            out.append(units[unit * 2 : unit * 2 + 2].decode("utf-16-le", "surrogatepass"))
    return _escape_text("".join(out))


def _escape_text(rendered: str) -> str:
    # Tags were inserted as text: escape only what lies outside them.
    parts: list[str] = []
    i = 0
    while i < len(rendered):
        if rendered[i] == "<":
            end = rendered.find(">", i)
            tag = rendered[i : end + 1]
            if tag.split()[0].strip("</>") in (
                "b",
                "i",
                "s",
                "u",
                "code",
                "pre",
                "a",
                "blockquote",
            ):
                parts.append(tag)
                i = end + 1
                continue
        parts.append(html.escape(rendered[i], quote=False))
        i += 1
    return "".join(parts)


def ours(source: str) -> str:
    return to_format(source, TextFormat.TELEGRAM_HTML)


MESSAGE = (
    "# Opening hours\n\nWe are open **Monday to Friday**, 9:00-18:00, and *Saturday* "
    "mornings. See [the map](https://example.com/map?x=1&y=2) or call `+1 555 0100`.\n\n"
    "- Parking: free\n- Wi-Fi: yes\n- Pets: ~~no~~ yes\n\n> Prices may change.\n\n"
    "```\nMon-Fri 09:00-18:00\nSat     09:00-13:00\n```\n"
)


def main() -> None:
    for name, convert in (
        ("markdown-it-py (ours)", ours),
        ("telegramify-markdown", telegramify_html),
    ):
        right = sum(convert(source) == expected for source, expected in CASES)
        runs = 2000
        seconds = min(timeit.repeat(lambda c=convert: c(MESSAGE), number=runs, repeat=5))
        print(f"{name:24} {right}/{len(CASES)} cases  {seconds / runs * 1e6:7.1f} µs/message")
        for source, expected in CASES:
            got = convert(source)
            if got != expected:
                print(f"    {source!r}: {got!r}")
    runs = 2000
    bare = min(timeit.repeat(lambda: telegramify_markdown.convert(MESSAGE), number=runs, repeat=5))
    print(f"telegramify convert() alone, text+entities: {bare / runs * 1e6:.1f} µs/message")


if __name__ == "__main__":
    main()
