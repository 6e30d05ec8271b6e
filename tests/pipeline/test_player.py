"""General Bots' rules of PLAY (pipeline.player): the kind of content a name shows, the
options a text gives, the title a name has."""

from __future__ import annotations

import pytest

from channels.base import PlayerOptions
from pipeline.player import (
    ContentType,
    content_type_of,
    content_type_of_media,
    parse_options,
    title_of,
)

KINDS = [
    ("training-video.mp4", ContentType.VIDEO),
    ("clip.OGG", ContentType.VIDEO),  # General Bots lists .ogg with the videos
    ("team-message.mp3", ContentType.AUDIO),
    ("a/b/photo.JPEG", ContentType.IMAGE),
    ("quarterly-report.pptx", ContentType.PRESENTATION),
    ("proposal.docx", ContentType.DOCUMENT),
    ("sales.csv", ContentType.SPREADSHEET),
    ("contract.pdf", ContentType.PDF),
    ("src/main.rs", ContentType.CODE),
    ("start.bas", ContentType.CODE),
    ("README.md", ContentType.MARKDOWN),
    ("page.html", ContentType.HTML),
    ("notes", ContentType.UNKNOWN),
    ("archive.zip", ContentType.UNKNOWN),
    ("https://example.com/videos/demo.mp4?sig=1", ContentType.VIDEO),
    ("https://www.youtube.com/embed/dQw4w9WgXcQ", ContentType.VIDEO),
    ("https://player.vimeo.com/video/123456789", ContentType.VIDEO),
    ("https://i.imgur.com/abc", ContentType.IMAGE),
    ("https://example.com/about", ContentType.IFRAME),
    ("https://example.com/file.xyz", ContentType.UNKNOWN),
]


@pytest.mark.parametrize(("source", "kind"), KINDS, ids=[s for s, _ in KINDS])
def test_the_kind_of_content_comes_from_the_name(source: str, kind: ContentType) -> None:
    assert content_type_of(source) is kind


@pytest.mark.parametrize(
    ("media", "kind"),
    [
        ("video/mp4", ContentType.VIDEO),
        ("audio/ogg", ContentType.AUDIO),
        ("image/png", ContentType.IMAGE),
        ("application/pdf", ContentType.PDF),
        (
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            ContentType.PRESENTATION,
        ),
        ("application/vnd.ms-excel", ContentType.SPREADSHEET),
        ("application/msword", ContentType.DOCUMENT),
        ("text/html", ContentType.HTML),
        ("text/markdown", ContentType.MARKDOWN),
        ("text/plain", ContentType.CODE),
        ("application/octet-stream", ContentType.UNKNOWN),
    ],
)
def test_a_stored_file_with_no_telling_name_shows_as_its_type(
    media: str, kind: ContentType
) -> None:
    assert content_type_of_media(media) is kind


def test_each_kind_has_general_bots_component() -> None:
    assert [k.component for k in ContentType] == [
        "video-player",
        "audio-player",
        "image-viewer",
        "presentation-viewer",
        "document-viewer",
        "code-viewer",
        "spreadsheet-viewer",
        "pdf-viewer",
        "markdown-viewer",
        "html-viewer",
        "iframe-viewer",
        "generic-viewer",
    ]


OPTIONS = [
    ("", PlayerOptions()),
    ("controls", PlayerOptions()),
    ("autoplay,loop,muted", PlayerOptions(autoplay=True, loop=True, muted=True)),
    (" Autoplay , FULLSCREEN ", PlayerOptions(autoplay=True, fullscreen=True)),
    ("nocontrols", PlayerOptions(controls=False)),
    ("start=10,end=20.5", PlayerOptions(start=10.0, end=20.5)),
    ("width=640,height=360", PlayerOptions(width=640, height=360)),
    ("page=3,slide=2,zoom=1.5,theme=Dark", PlayerOptions(page=3, slide=2, zoom=1.5, theme="dark")),
    # unknown words and keys, and values that are no number, are ignored as General Bots does
    ("bogus,speed=2,linenumbers,highlight=1-3", PlayerOptions()),
    ("start=soon,width=-5,height=1.5,end=", PlayerOptions()),
]


@pytest.mark.parametrize(("text", "options"), OPTIONS, ids=[t or "(none)" for t, _ in OPTIONS])
def test_options_are_general_bots_words(text: str, options: PlayerOptions) -> None:
    assert parse_options(text) == options


@pytest.mark.parametrize(
    ("source", "title"),
    [
        ("onboarding/welcome.mp4", "welcome"),
        ("https://example.com/videos/demo.mp4?sig=1", "demo"),
        ("https://www.youtube.com/embed/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
        ("https://example.com/", "Untitled"),
        ("notes", "notes"),
    ],
)
def test_the_title_is_the_files_name(source: str, title: str) -> None:
    assert title_of(source) == title
