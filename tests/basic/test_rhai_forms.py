"""The Rhai forms General Bots' engine accepts inside BASIC: maps, ``??``, ``?.``, ``&&``,
method calls, element field assignment, ``//`` and ``#`` comments, bare EXIT, its functions,
tool PARAMs in its shapes and ``SET SCHEDULE``, each as a conversation or a check."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from basic import check_source, compile_source
from basic.tools import openai_tool
from tests.basic.transcript import CapableHost, programs, run_transcript

CORPUS = Path(__file__).resolve().parent.parent / "templates-corpus"

CONVERSATIONS = [
    (
        "maps over several lines, nested, trailing commas, quoted keys",
        """
        order = #{
            id: 7,
            "customer name": "Ana",
            items: [#{ sku: "a1", qty: 2 }, #{ sku: "b2", qty: 1, },],
        }
        TALK order.id + " " + order["customer name"] + " " + order.items[1].sku
        TALK LEN(order.items) + " " + JSON_OF(order.items[0])
        """.replace("JSON_OF", "TO_JSON"),
        """
        7 Ana b2
        2 {"sku": "a1", "qty": 2}
        """,
    ),
    (
        "?? and ?. and && and || and !",
        """
        user = #{ name: "Ana" }
        TALK user.email ?? "no email"
        TALK user?.address?.city ?? "no city"
        IF user.name = "Ana" && !(user.name = "Bo") || FALSE THEN TALK "yes"
        """,
        """
        no email
        no city
        yes
        """,
    ),
    (
        "methods, PUSH in place, element fields, compound assignment",
        """
        rows = []
        rows.PUSH(#{ sku: "x" })
        rows.push(#{ sku: "y" })
        rows[1].sku = "z"
        rows[0].price = 10
        rows[0].price += 5
        total = 0
        FOR EACH row IN rows
            total += LEN(row.sku)
        NEXT
        TALK rows[0].sku + rows[1].sku + " " + rows[0].price + " " + total
        TALK rows.CONTAINS("q") + " " + COUNT(rows)
        """,
        """
        xz 15 2
        false 2
        """,
    ),
    (
        "// and # comment lines; bare EXIT ends the dialog",
        """
        // a comment
        # another one
        TALK "before"
        IF TRUE THEN
            EXIT
        END IF
        TALK "never"
        """,
        "before",
    ),
    (
        "bare EXIT leaves a SUB only",
        """
        SUB greet(name)
            IF name = "" THEN
                EXIT
            END IF
            TALK "Hi " + name
        END SUB
        greet("")
        greet("Bo")
        TALK "done"
        """,
        """
        Hi Bo
        done
        """,
    ),
    (
        "General Bots' functions: dates, choices, lists, numbers",
        """
        d = "2024-05-06"
        TALK DATEADD("2024-01-31", 1, "month") + " " + DATEADD("2024-03-01 10:00:00", -2, "h")
        TALK DATEDIFF("2024-01-01", "2024-03-01", "day") + " " + DATEDIFF(d, "2025-06-01", "month")
        TALK IIF(1 > 2, "a", "b") + NVL("", "c") + COALESCE(NOTHING, "d") + NVL("e", "f")
        TALK JOIN(SLICE([1, 2, 3, 4], 1, 3), "-") + " " + FIRST([5, 6]) + LAST([5, 6])
        TALK SUM([1, 2.5]) + " " + CONTAINS([1, 2], 2) + " " + CONTAINS("hello", "ell")
        TALK JOIN(UNIQUE([1, 1, 2]), ",")
        TALK YEAR(d) + "/" + MONTH(d) + "/" + DAY(d) + " " + WEEKDAY("2024-05-05")
        TALK FLOOR(2.7) + CEIL(2.1) + " " + MAX([3, 9, 4]) + MIN(2, 1) + " " + ROUND(AVG([1, 2]), 1)
        """,
        """
        2024-02-29 2024-03-01 08:00:00
        60 13
        bcde
        2-3 56
        3.5 true true
        1,2
        2024/5/6 1
        5 91 1.5
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


CHECKS = [
    ("x = TOJSON(data)\n", "1:5: unknown function TOJSON"),
    ('TALK "${NOSUCH(x)}"\n', "1:1: unknown function NOSUCH"),
    ("x = items(0)\n", "1:5: unknown function ITEMS"),  # not a variable of the file
    ("items = [1]\nx = items(0)\n", None),  # VB-style indexing of a list variable
    ("x = [1].NOPE()\n", "1:9: unknown function NOPE"),
    ('SET SCHEDULE "61 * * * *"\n', "1:1: SET SCHEDULE: invalid cron expression '61 * * * *'"),
    ('SET SCHEDULE "whenever"\n', "1:1: SET SCHEDULE: cannot read the schedule 'whenever'"),
    ('SET SCHEDULE "0 0 21 * * *"\n', None),  # seconds first, as General Bots writes it
    ('SET SCHEDULE "every 5 minutes"\n', None),
    ("DESCRIPTION It is a web service.\n", None),  # prose DESCRIPTION in start.bas: dropped
    ("FOR EACH x IN [1]\n  TALK x\nEND FOR\n", "1:1: FOR EACH without NEXT"),
    ("IF x IS NULL THEN\n  TALK 1\nEND IF\n", "1:6: unexpected 'IS'"),
]


@pytest.mark.parametrize(("source", "error"), CHECKS, ids=[s.split("\n")[0] for s, _ in CHECKS])
def test_check(source: str, error: str | None) -> None:
    errors = [f"{e.line}:{e.column}: {e.message}" for e in check_source(source, "t.bas")]
    if error is None:
        assert errors == []
    else:
        assert errors and errors[0].startswith(error)


def test_schedules_and_warnings_are_recorded_on_the_program() -> None:
    program = compile_source('SET SCHEDULE "*/2 * * * * *"\nTALK "tick"\n', "tick.bas")
    assert program.schedules == ("*/2 * * * * *",)
    assert compile_source('SET SCHEDULE "at 9am"\n', "t.bas").schedules == ("0 0 9 * * *",)
    unquoted = compile_source("SET SCHEDULE every 1 hour\n", "t.bas")
    assert unquoted.schedules == ()
    assert [str(w) for w in unquoted.analysis.warnings] == [
        "t.bas:1:1: warning: SET SCHEDULE without a quoted expression is ignored: "
        'write SET SCHEDULE "0 9 * * *"'
    ]


def test_table_blocks_declare_the_bots_tables() -> None:
    program = compile_source(
        """TABLE students ON default
    Id uuid key
    ' a comment
    Name string(255) NOT NULL
    UNIQUE(Name)
    FIELD born AS date
END TABLE
TALK "ok"
""",
        "students.bas",
    )
    (table,) = program.tables
    assert (table.name, [(c.name, c.type, c.options) for c in table.columns]) == (
        "students",
        [("Id", "UUID", "key"), ("Name", "STRING", "NOT NULL"), ("born", "DATE", "")],
    )
    assert [str(w) for w in program.analysis.warnings] == [
        "students.bas:5:5: warning: TABLE students: not a column (name TYPE), skipped"
    ]
    empty = compile_source("", "students.bas")
    assert len(program.main.code) > len(empty.main.code), "outside tables.bas, TALK runs"


def test_tables_bas_is_a_schema_file_whose_other_lines_are_ignored() -> None:
    """General Bots reads only the TABLE blocks of tables.bas (its CREATE INDEX lines and
    anything else are never run), so such lines pass the check with one warning."""
    source = """' schema
TABLE leads
    id UUID PRIMARY KEY
    status VARCHAR(50) DEFAULT 'new'
END TABLE

CREATE INDEX idx_leads_status ON leads(status)
CREATE INDEX idx_leads_id ON leads(id)
"""
    assert check_source(source, "crm.gbdialog/tables.bas") == []
    program = compile_source(source, "crm.gbdialog/tables.bas")
    assert [t.name for t in program.tables] == ["leads"]
    assert [str(w) for w in program.analysis.warnings] == [
        "crm.gbdialog/tables.bas:7:1: warning: ignored: 2 line(s) outside TABLE blocks "
        "(General Bots reads only the TABLE blocks of tables.bas)"
    ]
    elsewhere = check_source(source, "crm.gbdialog/schema.bas")
    assert [(e.line, e.message) for e in elsewhere] == [
        (7, "unknown keyword or statement 'CREATE'"),
        (8, "unknown keyword or statement 'CREATE'"),
    ]
    assert [e.message for e in check_source("TABLE t\n  a TEXT\n", "t.bas")] == [
        "TABLE without END TABLE"
    ]


def test_param_shapes_of_general_bots_and_defaults_in_the_schema() -> None:
    program = compile_source(
        """PARAM period AS INTEGER DEFAULT 30 DESCRIPTION "Days to look back"
PARAM location AS "The city and state, e.g. San Francisco, CA"
PARAM unit AS "celsius", "fahrenheit"
PARAM email AS EMAIL DESCRIPTION "Where to send it" LIKE "a@b.com" OPTIONAL
DESCRIPTION "Weather report"
""",
        "weather.bas",
    )
    assert openai_tool(program)["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "period": {"type": "integer", "description": "Days to look back", "default": 30},
            "location": {
                "type": "string",
                "description": "The city and state, e.g. San Francisco, CA",
            },
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "email": {
                "type": "string",
                "format": "email",
                "description": "Where to send it",
                "examples": ["a@b.com"],
            },
        },
        "required": ["location", "unit"],
    }


async def test_hear_menu_options_are_buttons_until_answered() -> None:
    host = CapableHost()
    progs = programs(("start.bas", 'HEAR size AS "Small", "Large"\nTALK "You chose " + size\n'))
    from basic import Interpreter

    interpreter = Interpreter(progs, host)
    outcome = await interpreter.start()
    assert host.suggestions == [("Small", "Small"), ("Large", "Large")]
    assert outcome.state is not None
    await interpreter.resume(outcome.state, "2")
    assert host.said == ["You chose Large"]
    assert host.suggestions == []


class CrmHost(CapableHost):
    """GET of a path (not a URL) reads the bot's drive; here it answers from the table too."""

    async def read_file(self, path: str) -> Any:
        self.calls.append(("http", "GET", path, None, {}))
        return self.http_responses.get(path)


async def test_create_deal_of_the_sales_deals_template_posts_maps_with_dateadd() -> None:
    """The tool as the LLM calls it; the CRM API answers from a table of responses."""
    source = (CORPUS / "sales-deals.gbai" / "crm.gbdialog" / "create-deal.bas").read_text()
    api: dict[str, Any] = {
        "/api/crm/contacts?search=joao@empresa.com": [],
        "/api/crm/contacts": {"id": "c-1"},
        "/api/crm/accounts?search=Empresa ABC": [],
        "/api/crm/accounts": {"id": "a-1"},
        "/api/crm/deals": {"id": "d-9"},
    }
    host = CrmHost(http_responses=api)
    close = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    conversation = await run_transcript(
        programs(("create-deal.bas", source)),
        f"""
        Novo contato criado: João Silva
        Nova conta criada: Empresa ABC
        ✅ **Deal criado com sucesso!**
        **Contrato ABC**
        💰 Valor: R$ 50,000
        📊 Estágio: new (10% probabilidade)
        📅 Previsão de fechamento: {close}
        🏢 Empresa: Empresa ABC
        👤 Contato: joao@empresa.com
        """,
        host=host,
        start="create-deal",
        arguments={
            "title": "Contrato ABC",
            "contact_email": "joao@empresa.com",
            "contact_name": "João Silva",
            "company": "Empresa ABC",
            "value": 50000,
        },
    )
    assert conversation.outcome is not None and conversation.outcome.result == "d-9"
    posts = {call[2]: call[3] for call in host.calls if call[:2] == ("http", "POST")}
    assert json.loads(json.dumps(posts["/api/crm/deals"])) == {
        "title": "Contrato ABC",
        "value": 50000,
        "stage": "new",
        "probability": 10,
        "source": "CHAT",
        "expected_close_date": close,
        "contact_id": "c-1",
        "account_id": "a-1",
        "notes": None,
    }
    assert posts["/api/crm/contacts"]["first_name"] == "João"
