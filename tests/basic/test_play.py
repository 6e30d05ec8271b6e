"""PLAY and STOP, General Bots' player keywords: the forms it accepts, what reaches the host,
and the errors ``botserver check`` gives for the forms it does not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from basic import (
    BasicRuntimeError,
    BasicSyntaxError,
    MissingCapability,
    check_source,
    compile_source,
)
from basic.errors import ScriptError
from tests.basic.transcript import RecordingHost, converse


class PlayerHost(RecordingHost):
    """A host with a player: records each PLAY and STOP, answers PLAY with a JSON text."""

    def __init__(self, *, missing: str = "") -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []
        self.missing = missing

    async def play(self, source: Any, options: str) -> str:
        if source == self.missing:
            raise ScriptError(f"PLAY: no file {source!r} in the bot's drive")
        self.calls.append(("play", source, options))
        return json.dumps({"title": source})

    async def stop_player(self) -> None:
        self.calls.append(("stop",))


# (program, the host calls it makes)
FORMS = [
    ('PLAY "training-video.mp4"', [("play", "training-video.mp4", "")]),
    (
        'PLAY "background.mp4" WITH OPTIONS "autoplay,loop,muted"',
        [("play", "background.mp4", "autoplay,loop,muted")],
    ),
    ('play "a.png" with options "fullscreen"', [("play", "a.png", "fullscreen")]),
    ('PLAY  "a.png"  WITH   OPTIONS  "x"', [("play", "a.png", "x")]),
    ('f = "docs/" & "menu.pdf"\nPLAY f', [("play", "docs/menu.pdf", "")]),
    (
        'o = "start=10"\nPLAY "clip" + ".mp4" WITH OPTIONS o & ",end=20"',
        [("play", "clip.mp4", "start=10,end=20")],
    ),
    ('PLAY ("a" & ".mp3")', [("play", "a.mp3", "")]),
    ('product = #{image_path: "p.jpg"}\nPLAY product.image_path', [("play", "p.jpg", "")]),
    (
        'PLAY "https://example.com/videos/demo.mp4"',
        [("play", "https://example.com/videos/demo.mp4", "")],
    ),
    ("STOP", [("stop",)]),
    ("stop ' the player closes", [("stop",)]),
    ('IF 1 = 1 THEN PLAY "a.pdf" ELSE STOP', [("play", "a.pdf", "")]),
    ('IF 1 = 2 THEN PLAY "a.pdf" ELSE STOP', [("stop",)]),
    ('PLAY "a.mp4"\nSTOP\nPLAY "b.mp4"', [("play", "a.mp4", ""), ("stop",), ("play", "b.mp4", "")]),
    # PLAY and STOP are words a dialog may still use as variables
    ("play = 2\nstop = play + 1\nFOR i = 1 TO stop\nNEXT", []),
    ("WITH options\n  .a = 1\nEND WITH", []),
]


@pytest.mark.parametrize(("program", "calls"), FORMS, ids=[p for p, _ in FORMS])
async def test_the_forms_general_bots_accepts(program: str, calls: list[tuple[Any, ...]]) -> None:
    host = PlayerHost()
    await converse(program + "\n", [], host=host)
    assert host.calls == calls


async def test_plays_value_is_the_players_json_text() -> None:
    host = PlayerHost()
    conversation = await converse(
        'shown = PLAY "intro.mp4"\nTALK shown\nTALK PLAY "b.png"\n', [], host=host
    )
    assert conversation.said == ['{"title": "intro.mp4"}', '{"title": "b.png"}']


async def test_a_file_not_in_the_drive_is_the_dialogs_error() -> None:
    host = PlayerHost(missing="nothere.mp4")
    with pytest.raises(BasicRuntimeError) as info:
        await converse('TALK "a"\nPLAY "nothere.mp4"\n', [], host=host)
    assert str(info.value) == ("start.bas:2: PLAY: no file 'nothere.mp4' in the bot's drive")
    program = 'ON ERROR RESUME NEXT\nPLAY "nothere.mp4"\nTALK "error: " + err\n'
    caught = await converse(program, [], host=PlayerHost(missing="nothere.mp4"))
    assert caught.said == ["error: PLAY: no file 'nothere.mp4' in the bot's drive"]


async def test_a_host_without_a_player_lacks_the_capability() -> None:
    with pytest.raises(MissingCapability) as info:
        await converse('PLAY "a.mp4"\n', [])
    assert info.value.capability == "play"
    with pytest.raises(MissingCapability) as info:
        await converse("STOP\n", [])
    assert info.value.capability == "stop_player"


# (program, "line:col: message" that botserver check gives)
ERRORS = [
    (
        "PLAY\n",
        "1:1: PLAY needs a file of the bot's drive or a URL: PLAY source [WITH OPTIONS options]",
    ),
    ('PLAY "a.mp4" WITH\n', "1:14: unexpected 'WITH': PLAY source [WITH OPTIONS options]"),
    ('PLAY "a.mp4", "autoplay"\n', "1:13: unexpected ',': PLAY source [WITH OPTIONS options]"),
    ('PLAY "a.mp4" WITH OPTIONS\n', "1:26: unexpected end of line"),
    ("STOP 1\n", "1:6: STOP takes nothing after it"),
]


@pytest.mark.parametrize(("program", "expected"), ERRORS, ids=[p for p, _ in ERRORS])
def test_check_names_the_forms_it_does_not_accept(program: str, expected: str) -> None:
    [error] = check_source(program, "start.bas")
    assert str(error) == f"start.bas:{expected}"
    with pytest.raises(BasicSyntaxError):
        compile_source(program, "start.bas")


def test_check_accepts_every_form() -> None:
    program = "\n".join(p for p, _ in FORMS) + "\n"
    assert check_source(program, "start.bas") == []
