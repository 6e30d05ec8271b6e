"""The first slice, as conversations: TALK, HEAR, assignment, IF, interpolation, suggestions."""

from __future__ import annotations

import pytest

from tests.basic.transcript import RecordingHost, converse, run_transcript

# (what it shows, program, conversation: "> " lines are the user's)
CONVERSATIONS = [
    (
        "greeting asks the name and uses it",
        """
        TALK "Hello! What is your name?"
        HEAR name AS NAME
        TALK "Nice to meet you, ${name}!"
        """,
        """
        Hello! What is your name?
        > joão silva
        Nice to meet you, João Silva!
        """,
    ),
    (
        "plain HEAR keeps the text as typed",
        """
        HEAR anything
        TALK "[" + anything + "]"
        """,
        """
        > Some Text  here
        [Some Text  here]
        """,
    ),
    (
        "HEAR inside IF waits and resumes inside the branch",
        """
        x = 1
        IF x = 1 THEN
            TALK "In the branch"
            HEAR answer
            TALK "Still in the branch: " + answer
        ELSE
            TALK "wrong branch"
        END IF
        TALK "after"
        """,
        """
        In the branch
        > yes
        Still in the branch: yes
        after
        """,
    ),
    (
        "ELSEIF picks the first true condition",
        """
        HEAR n AS INTEGER
        IF n < 0 THEN
            TALK "negative"
        ELSEIF n = 0 THEN
            TALK "zero"
        ELSEIF n < 10 THEN
            TALK "small"
        ELSE
            TALK "large"
        END IF
        """,
        """
        > 7
        small
        """,
    ),
    (
        "one-line IF with ELSE",
        """
        HEAR n AS INTEGER
        IF n > 5 THEN TALK "big" ELSE TALK "little"
        IF n > 100 THEN TALK "huge"
        """,
        """
        > 3
        little
        """,
    ),
    (
        "INTEGER accepts surrounding spaces and becomes a number",
        """
        HEAR n AS INTEGER
        TALK n + 1
        """,
        """
        >  42
        43
        """,
    ),
    (
        "EMAIL is lowercased; a bad address gets a retry prompt",
        """
        HEAR email AS EMAIL
        TALK "Saved " + email
        """,
        """
        > not an email
        Please enter a valid email address.
        > Maria@Example.COM
        Saved maria@example.com
        """,
    ),
    (
        "three invalid answers leave the variable empty and go on",
        """
        HEAR age AS INTEGER
        TALK "age=[" + age + "]"
        """,
        """
        > old
        Please enter a whole number.
        > very old
        Please enter a whole number.
        > ancient
        age=[]
        """,
    ),
    (
        "NAME rejects digits",
        """
        HEAR name AS NAME
        TALK name
        """,
        """
        > r2d2
        Please enter a valid name.
        > ana maria
        Ana Maria
        """,
    ),
    (
        "menu: number, exact in any case, unique partial",
        """
        HEAR a AS "Sales", "Support", "Billing"
        HEAR b AS "Sales", "Support", "Billing"
        HEAR c AS "Sales", "Support", "Billing"
        TALK a + "|" + b + "|" + c
        """,
        """
        > 2
        > BILLING
        > sal
        Support|Billing|Sales
        """,
    ),
    (
        "menu: an ambiguous or unknown answer lists the options",
        """
        HEAR a AS "Sales", "Support"
        TALK a
        """,
        """
        > s
        Please choose one of: Sales, Support.
        > 9
        Please choose one of: Sales, Support.
        > support
        Support
        """,
    ),
    (
        "keywords and variable names are case-insensitive",
        """
        talk "one"
        Hear UserName
        Talk "hi " + USERNAME
        set Total = 1
        LET total = TOTAL + 1
        If total = 2 Then
          tAlK "two"
        End If
        """,
        """
        one
        > bob
        hi bob
        two
        """,
    ),
    (
        "comments with ' and REM",
        """
        ' a comment line
        REM another comment
        TALK "it's fine" ' trailing comment
        x = 1 REM trailing REM
        TALK x
        """,
        """
        it's fine
        1
        """,
    ),
    (
        "interpolation of object fields and + for numbers and text",
        """
        WITH person
            name = "Ana"
            address.city = "Recife"
        END WITH
        n = 2 + 3
        TALK "${person.name} lives in ${person.address.city}; n=${n}; " + n + 1
        """,
        """
        Ana lives in Recife; n=5; 51
        """,
    ),
    (
        "NOT, AND, OR and comparisons",
        """
        a = 1
        b = ""
        IF NOT b AND a = 1 THEN TALK "1"
        IF a <> 1 OR b = "" THEN TALK "2"
        IF a >= 1 AND a <= 1 AND NOT (a > 1) THEN TALK "3"
        IF "42" = 42 THEN TALK "4"
        """,
        """
        1
        2
        3
        4
        """,
    ),
    (
        "BEGIN TALK keeps markdown and lines, interpolates",
        """
        name = "Ana"
        BEGIN TALK
        **Hello ${name}**

        - one
        - two
        END TALK
        """,
        """
        **Hello Ana**
        - one
        - two
        """,
    ),
]


@pytest.mark.parametrize(
    ("program", "transcript"),
    [(p, t) for _, p, t in CONVERSATIONS],
    ids=[name for name, _, _ in CONVERSATIONS],
)
async def test_conversation(program: str, transcript: str) -> None:
    await run_transcript(program, transcript)


async def test_begin_talk_is_one_message_with_blank_lines_kept() -> None:
    host = RecordingHost()
    await converse("BEGIN TALK\n  **Title**\n\n  body\nEND TALK\n", [], host=host)
    assert host.said == ["**Title**\n\nbody"]


async def test_suggestions_are_offered_and_cleared() -> None:
    host = RecordingHost()
    await converse(
        """
        ADD SUGGESTION "old" AS "Old"
        CLEAR SUGGESTIONS
        ADD SUGGESTION "price" AS "Check price"
        ADD_SUGGESTION "help" AS "Help"
        """,
        [],
        host=host,
    )
    assert host.suggestions == [("price", "Check price"), ("help", "Help")]


async def test_state_between_turns_is_plain_json_with_a_version() -> None:
    conversation = await converse(
        """
        FOR i = 1 TO 2
            HEAR x
        NEXT
        """,
        ["a", "b"],
    )
    first = conversation.states[0]
    assert first["version"] == 1
    assert conversation.outcome is not None and conversation.outcome.state is None


async def test_a_finished_dialog_has_no_state() -> None:
    conversation = await converse('TALK "bye"', [])
    assert conversation.outcome is not None
    assert conversation.outcome.state is None
    assert conversation.said == ["bye"]


async def test_globals_are_case_insensitive_and_param_rows_drop_the_prefix() -> None:
    conversation = await converse(
        'TALK admin1 + " " + Color', [], globals={"param-Admin1": "a@x.com", "COLOR": "teal"}
    )
    assert conversation.said == ["a@x.com teal"]
