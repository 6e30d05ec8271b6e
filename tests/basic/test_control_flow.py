"""Branches, loops, procedures, other dialogs and error handling, as conversations.

Every HEAR below suspends the dialog to JSON and resumes it (see transcript.py), so each case
also shows that the construct resumes exactly where it waited.
"""

from __future__ import annotations

import pytest

from tests.basic.transcript import programs, run_transcript

CONVERSATIONS = [
    (
        "SELECT CASE with values, lists, ranges, IS and ELSE",
        """
        FOR EACH n IN [1, 3, 7, 12, 50]
            SELECT CASE n
                CASE 1
                    TALK "one"
                CASE 2, 3
                    TALK "two or three"
                CASE 4 TO 9
                    TALK "four to nine"
                CASE IS > 40
                    TALK "big"
                CASE ELSE
                    TALK "other " + n
            END SELECT
        NEXT n
        """,
        """
        one
        two or three
        four to nine
        other 12
        big
        """,
    ),
    (
        "SELECT CASE on the answer of a HEAR (analytics menu shape)",
        """
        HEAR choice AS INTEGER
        SELECT CASE choice
            CASE 1
                TALK "overview"
            CASE ELSE
                HEAR query AS TEXT
                TALK "query: " + query
        END SELECT
        """,
        """
        > 9
        > how many users?
        query: how many users?
        """,
    ),
    (
        "SWITCH with text cases and DEFAULT",
        """
        HEAR color
        SWITCH color
            CASE "red"
                TALK "stop"
            DEFAULT
                TALK "go"
        END SWITCH
        """,
        """
        > green
        go
        """,
    ),
    (
        "FOR TO STEP, counting down, EXIT FOR",
        """
        FOR i = 10 TO 1 STEP -3
            TALK i
        NEXT i
        FOR j = 1 TO 100
            IF j = 3 THEN EXIT FOR
            TALK "j" + j
        NEXT
        TALK "done at " + j
        """,
        """
        10
        7
        4
        1
        j1
        j2
        done at 3
        """,
    ),
    (
        "HEAR inside FOR EACH resumes in the same iteration",
        """
        total = 0
        FOR EACH item IN ["apples", "pears"]
            TALK "How many " + item + "?"
            HEAR count AS INTEGER
            total = total + count
        NEXT
        TALK "Total: " + total
        """,
        """
        How many apples?
        > 2
        How many pears?
        > 5
        Total: 7
        """,
    ),
    (
        "DO WHILE, DO UNTIL, DO ... LOOP WHILE, WHILE ... WEND",
        """
        i = 0
        DO WHILE i < 2
            i = i + 1
        LOOP
        DO UNTIL i >= 4
            i = i + 1
        LOOP
        DO
            i = i + 1
        LOOP WHILE i < 6
        WHILE i < 8
            i = i + 1
        WEND
        TALK i
        """,
        """
        8
        """,
    ),
    (
        "a HEAR loop that repeats until the answer is right",
        """
        DO
            TALK "Password?"
            HEAR guess
        LOOP UNTIL guess = "open"
        TALK "Welcome"
        """,
        """
        Password?
        > no
        Password?
        > open
        Welcome
        """,
    ),
    (
        "SUB with parameters and a HEAR inside, CALL and bare call",
        """
        CALL Ask("name")
        Ask("city")
        TALK "Thanks " + name + " from " + city

        SUB Ask(field)
            TALK "Your " + field + "?"
            HEAR answer
            IF field = "name" THEN name = answer ELSE city = answer
        END SUB
        """,
        """
        Your name?
        > Ana
        Your city?
        > Recife
        Thanks Ana from Recife
        """,
    ),
    (
        "FUNCTION results in expressions, RETURN and VB-style name assignment, recursion",
        """
        TALK Double(4) + Square(3)
        TALK Fact(5)

        FUNCTION Double(x)
            RETURN x * 2
        END FUNCTION

        FUNCTION Square(x)
            Square = x * x
        END FUNCTION

        FUNCTION Fact(n)
            IF n <= 1 THEN RETURN 1
            RETURN n * Fact(n - 1)
        END FUNCTION
        """,
        """
        17
        120
        """,
    ),
    (
        "SUB parameters are local; other variables are the dialog's",
        """
        greeting = "hi"
        who = "dialog"
        CALL Change("param")
        TALK greeting + " " + who + " " + created

        SUB Change(who)
            created = "new"
            greeting = "hello " + who
        END SUB
        """,
        """
        hello param dialog new
        """,
    ),
    (
        "EXIT SUB and EXIT DO",
        """
        CALL Early()
        DO
            EXIT DO
            TALK "never"
        LOOP
        TALK "end"
        SUB Early()
            TALK "before"
            EXIT SUB
            TALK "never"
        END SUB
        """,
        """
        before
        end
        """,
    ),
    (
        "WITH builds an object from field lines (field names may be keywords of other statements)",
        """
        to_email = "a@b.com"
        WITH mail
            to = to_email
            from = "me@b.com"
            .subject = "Hi"
        END WITH
        TALK mail.to + " " + mail.FROM + " " + mail.subject
        """,
        """
        a@b.com me@b.com Hi
        """,
    ),
    (
        "ON ERROR RESUME NEXT skips the failing statement and sets err",
        """
        ON ERROR RESUME NEXT
        x = 1 / 0
        TALK "still here: " + err
        THROW "boom"
        TALK "after " + err
        ON ERROR GOTO 0
        TALK "end"
        """,
        """
        still here: division by zero
        after boom
        end
        """,
    ),
    (
        "an error in a SUB resumes after the CALL in the caller that asked for it",
        """
        ON ERROR RESUME NEXT
        CALL Fails()
        TALK "caller continues"
        SUB Fails()
            THROW "inner"
            TALK "never"
        END SUB
        """,
        """
        caller continues
        """,
    ),
    (
        "lists: literals, indexes, assignment, UBOUND, FOR EACH over SPLIT",
        """
        items = ["a", "b"]
        items[1] = "B"
        items[2] = "c"
        TALK items(0) + items[1] + items[2] + " " + UBOUND(items)
        FOR EACH part IN SPLIT("x;y", ";")
            TALK part
        NEXT
        """,
        """
        aBc 2
        x
        y
        """,
    ),
    (
        "END stops the dialog",
        """
        TALK "one"
        END
        TALK "two"
        """,
        """
        one
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


async def test_call_another_dialog_waits_inside_it_and_comes_back() -> None:
    dialogs = programs(
        (
            "start.bas",
            """
            TALK "Main menu"
            CALL "ask-name.bas"
            TALK "Back in start, " + name
            """,
        ),
        (
            "ask-name.bas",
            """
            TALK "What is your name?"
            HEAR name AS NAME
            TALK "Got it"
            """,
        ),
    )
    conversation = await run_transcript(
        dialogs,
        """
        Main menu
        What is your name?
        > ana
        Got it
        Back in start, Ana
        """,
    )
    frames = conversation.states[0]["frames"]
    assert [f["program"] for f in frames] == ["start", "ask-name"]


async def test_resume_of_a_changed_dialog_is_refused() -> None:
    from basic import BasicRuntimeError, Interpreter, compile_source
    from tests.basic.transcript import RecordingHost

    old = compile_source("HEAR x\nTALK x\n", "start.bas")
    new = compile_source('TALK "new"\nHEAR x\nTALK x\n', "start.bas")
    outcome = await Interpreter({"start": old}, RecordingHost()).start()
    assert outcome.state is not None
    with pytest.raises(BasicRuntimeError, match="changed"):
        await Interpreter({"start": new}, RecordingHost()).resume(outcome.state, "hi")


async def test_hear_inside_a_function_used_in_an_expression() -> None:
    await run_transcript(
        """
        TALK "Sum: " + (AskNumber("first") + AskNumber("second"))

        FUNCTION AskNumber(label)
            TALK "The " + label + " number?"
            HEAR n AS INTEGER
            RETURN n
        END FUNCTION
        """,
        """
        The first number?
        > 2
        The second number?
        > 40
        Sum: 42
        """,
    )
