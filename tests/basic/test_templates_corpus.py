"""``botserver check`` over General Bots' own template packages (tests/templates-corpus).

Each dialog's expected result is listed: ``OK``, or its first error with the rule of General
Bots' engine it breaks (its BASIC is a line preprocessor over Rhai: a form its engine rejects
is refused here too, with an error that says where).  Warnings (tools and dialogs a package
names but lacks, files General Bots does not load) never fail the check without ``--strict``.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from basic import compile_source
from gateway.cli import main

CORPUS = Path(__file__).resolve().parent.parent / "templates-corpus"
OK = ""

# file -> (first error "line: message", or OK), and the rule of General Bots' engine it breaks
EXPECTED: dict[str, tuple[str, str]] = {
    "analytics.gbai/analytics.gbdialog/custom-report.bas": (
        "11: unexpected 'WITH'",
        "HEAR takes AS TYPE or AS options; no WITH prompt",
    ),
    "analytics.gbai/analytics.gbdialog/platform-overview.bas": (
        "8: unexpected 'WITH'",
        "HEAR takes AS TYPE or AS options; no WITH prompt",
    ),
    "analytics.gbai/analytics.gbdialog/start.bas": (OK, ""),
    "announcements.gbai/announcements.gbdialog/auth.bas": (OK, ""),
    "announcements.gbai/announcements.gbdialog/change-subject.bas": (
        "6: unknown keyword or statement 'ADD_KB'",
        "ADD_KB is not a keyword it registers",
    ),
    "announcements.gbai/announcements.gbdialog/start.bas": (OK, ""),
    "announcements.gbai/announcements.gbdialog/update-summary.bas": (OK, ""),  # SET SCHEDULE
    "attendance.gbai/attendance.gbdialog/create-ticket.bas": (OK, ""),  # #{ } maps
    "attendance.gbai/attendance.gbdialog/resolve-chat.bas": (OK, ""),
    "attendance.gbai/attendance.gbdialog/start.bas": (OK, ""),
    "attendance.gbai/attendance.gbdialog/take-next.bas": (OK, ""),
    "attendance.gbai/attendance.gbdialog/transfer-chat.bas": (OK, ""),
    "attendance.gbai/attendance.gbdialog/view-queue.bas": (OK, ""),
    "broadcast.gbai/broadcast.gbdialog/broadcast.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/add-new-idea.bas": (OK, ""),  # IIF
    "campaign-manager.gbai/marketing.gbdialog/broadcast.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/create-campaign.bas": (OK, ""),  # // comments
    "campaign-manager.gbai/marketing.gbdialog/create-dynamic-list.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/create-template.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/get-image.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/list-campaigns.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/list-templates.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/post-to-instagram.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/poster.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/send-campaign.bas": (OK, ""),
    "campaign-manager.gbai/marketing.gbdialog/start.bas": (OK, ""),
    "default.gbai/default.gbdialog/calculate.bas": (OK, ""),
    "default.gbai/default.gbdialog/send-email.bas": (OK, ""),
    "default.gbai/default.gbdialog/send-sms.bas": (
        "22: unknown keyword or statement 'SEND'",
        "SMS is SEND_SMS phone, text: no SEND SMS",
    ),
    "default.gbai/default.gbdialog/translate.bas": (
        "24: SET HEADER takes 2 arguments, got 1",
        'SET HEADER "name", value: no "name" = value',
    ),
    "default.gbai/default.gbdialog/weather.bas": (OK, ""),
    "edu.gbai/edu.gbdialog/enrollment.bas": (OK, ""),
    "edu.gbai/edu.gbdialog/register_student.bas": (
        "13: unknown function UUID",
        "UUID is not a function it registers",
    ),
    "edu.gbai/edu.gbdialog/start.bas": (OK, ""),  # USE_WEBSITE(...), a function form
    "employees.gbai/employees.gbdialog/add-employee.bas": (OK, ""),
    "employees.gbai/employees.gbdialog/employee-jobs.bas": (
        "9: unexpected 'NOW'",
        'FORMAT is a function: FORMAT(NOW(), "MM-DD"), no FORMAT x AS',
    ),
    "employees.gbai/employees.gbdialog/search-employee.bas": (OK, ""),
    "employees.gbai/employees.gbdialog/start.bas": (OK, ""),
    "erp.gbai/erp.gbdialog/erp-jobs.bas": (
        "4: unexpected 'NOW'",
        'FORMAT is a function: FORMAT(NOW(), "..."), no FORMAT x AS',
    ),
    "erp.gbai/erp.gbdialog/inventory-management.bas": (
        "36: unknown function GUID",
        "GUID is not a function it registers",
    ),
    "erp.gbai/erp.gbdialog/purchasing.bas": (
        "5: unexpected 'NOW'",
        'FORMAT is a function: FORMAT(NOW(), "..."), no FORMAT x AS',
    ),
    "erp.gbai/erp.gbdialog/tables.bas": (OK, ""),  # CREATE INDEX lines: ignored, as it does
    "helpdesk.gbai/helpdesk.gbdialog/create-ticket.bas": (OK, ""),
    "helpdesk.gbai/helpdesk.gbdialog/start.bas": (OK, ""),
    "llm-tools.gbai/llm-tools.gbdialog/get-price.bas": (OK, ""),
    "llm-tools.gbai/llm-tools.gbdialog/start.bas": (OK, ""),
    "privacy.gbai/privacy.gbdialog/delete-data.bas": (
        "11: unexpected 'WITH'",
        "HEAR takes AS TYPE or AS options; no WITH prompt",
    ),
    "privacy.gbai/privacy.gbdialog/export-data.bas": (
        "14: unexpected 'WITH'",
        "HEAR takes AS TYPE or AS options; no WITH prompt",
    ),
    "privacy.gbai/privacy.gbdialog/manage-consents.bas": (
        "13: unexpected 'WITH'",
        "HEAR takes AS TYPE or AS options; no WITH prompt",
    ),
    "privacy.gbai/privacy.gbdialog/request-data.bas": (
        "14: unexpected 'WITH'",
        "HEAR takes AS TYPE or AS options; no WITH prompt",
    ),
    "privacy.gbai/privacy.gbdialog/start.bas": (OK, ""),
    "public-apis.gbai/public-apis.gbdialog/animals-apis.bas": (
        "47: unexpected 'image_url'",
        "DOWNLOAD takes a URL and a path",
    ),
    "public-apis.gbai/public-apis.gbdialog/data-utility-apis.bas": (
        "24: unexpected 'ARRAY'",
        "no NEW ARRAY: a list is [ ]",
    ),
    "public-apis.gbai/public-apis.gbdialog/entertainment-apis.bas": (
        "25: FOR EACH without NEXT",
        "FOR EACH closes with NEXT, not END FOR",
    ),
    "public-apis.gbai/public-apis.gbdialog/food-apis.bas": (
        "16: unexpected 'image_url'",
        "DOWNLOAD takes a URL and a path",
    ),
    "public-apis.gbai/public-apis.gbdialog/science-space-apis.bas": (
        "22: unexpected 'apod_data'",
        "DOWNLOAD takes a URL and a path",
    ),
    "public-apis.gbai/public-apis.gbdialog/weather-apis.bas": (
        "16: unexpected 'OBJECT'",
        "no NEW OBJECT: a map is #{ }",
    ),
    "reminder.gbai/reminder.gbdialog/add-reminder.bas": (OK, ""),
    "reminder.gbai/reminder.gbdialog/reminder.bas": (OK, ""),
    "reminder.gbai/reminder.gbdialog/start.bas": (OK, ""),
    "sales-deals.gbai/crm.gbdialog/close-deal.bas": (OK, ""),
    "sales-deals.gbai/crm.gbdialog/create-deal.bas": (OK, ""),  # DATEADD, #{ } maps
    "sales-deals.gbai/crm.gbdialog/find-deal.bas": (
        "36: unknown function TO_NUMBER",
        "TO_NUMBER is not a function it registers (VAL is)",
    ),
    "sales-deals.gbai/crm.gbdialog/list-deals.bas": (OK, ""),
    "sales-deals.gbai/crm.gbdialog/log-activity.bas": (OK, ""),
    "sales-deals.gbai/crm.gbdialog/pipeline-summary.bas": (OK, ""),
    "sales-deals.gbai/crm.gbdialog/start.bas": (OK, ""),
    "sales-deals.gbai/crm.gbdialog/update-deal.bas": (OK, ""),  # `update` is a variable
    "sales-pipeline.gbai/sales-pipeline.gbdialog/create-deal.bas": (OK, ""),
    "sales-pipeline.gbai/sales-pipeline.gbdialog/pipeline-jobs.bas": (
        "33: unexpected 'TO'",
        'FORMAT is a function: FORMAT(TODAY(), "..."), no FORMAT x AS',
    ),
    "sales-pipeline.gbai/sales-pipeline.gbdialog/start.bas": (OK, ""),
    "sales-pipeline.gbai/sales-pipeline.gbdialog/update-stage.bas": (
        "65: unexpected 'NOW'",
        'FORMAT is a function: FORMAT(NOW(), "..."), no FORMAT x AS',
    ),
    "store.gbai/store.gbdialog/checkout.bas": (
        "49: unknown function TOJSON",
        "TOJSON is not a function it registers",
    ),
    "store.gbai/store.gbdialog/start.bas": (
        "18: unknown function TOJSON",
        "TOJSON is not a function it registers",
    ),
    "template.gbai/template.gbdialog/send.bas": (OK, ""),
}
PACKAGES = sorted(p.name for p in CORPUS.glob("*.gbai"))


def check(*args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["check", *args])
    prefix = f"{CORPUS}/"
    return code, [line.removeprefix(prefix) for line in out.getvalue().splitlines()]


def first_errors(lines: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in lines:
        file, number, _column, message = line.split(":", 3)
        if not message.startswith(" warning:"):
            found.setdefault(file, f"{number}:{message}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_check_gives_each_dialog_of_the_package_its_expected_result(package: str) -> None:
    code, lines = check(str(CORPUS / package))
    expected = {f: e for f, (e, _) in EXPECTED.items() if f.startswith(f"{package}/")}
    actual = first_errors(lines)
    assert {f: actual.get(f, OK) for f in expected} == expected
    assert set(actual) <= set(expected), "a dialog the table does not list"
    assert code == (1 if any(expected.values()) else 0)


def test_the_table_covers_every_dialog_of_the_corpus() -> None:
    dialogs = {
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*.bas")
        if any(part.endswith(".gbdialog") for part in p.relative_to(CORPUS).parts)
    }
    assert dialogs == set(EXPECTED)
    assert all(rule for error, rule in EXPECTED.values() if error), "a failure without its rule"


def test_a_package_that_checks_clean_with_warnings_fails_only_with_strict() -> None:
    code, lines = check(str(CORPUS / "helpdesk.gbai"))
    assert (code, lines) == (
        0,
        [
            f"helpdesk.gbai/helpdesk.gbdialog/start.bas:{n}:1: warning: tool {t!r} is not "
            f"available: the package has no {t}.bas"
            for n, t in enumerate(
                ("check-ticket-status", "my-tickets", "update-ticket", "close-ticket"), start=2
            )
        ],
    )
    assert check("--strict", str(CORPUS / "helpdesk.gbai"))[0] == 1


def test_a_bas_outside_a_dialog_folder_is_ignored_with_a_warning() -> None:
    code, lines = check(str(CORPUS / "bank.gbai"))
    assert code == 0
    assert lines == [
        "bank.gbai:0:0: warning: no dialogs: General Bots loads the .bas files of the package's "
        ".gbdialog folders (bank.gbdialog/start.bas runs first)",
        "bank.gbai/start.bas:1:1: warning: ignored: not in a .gbdialog folder, so General Bots "
        "does not load it",
    ]


def test_the_corpus_passes_more_than_it_fails() -> None:
    passing = sum(1 for error, _ in EXPECTED.values() if not error)
    assert (passing, len(EXPECTED)) == (50, 75)


def test_a_tables_bas_declares_its_tables_and_ignores_its_create_index_lines() -> None:
    code, lines = check(str(CORPUS / "erp.gbai" / "erp.gbdialog" / "tables.bas"))
    assert code == 0
    assert lines[-1] == (
        "erp.gbai/erp.gbdialog/tables.bas:499:1: warning: ignored: 11 line(s) outside TABLE "
        "blocks (General Bots reads only the TABLE blocks of tables.bas)"
    )
    source = (CORPUS / "erp.gbai" / "erp.gbdialog" / "tables.bas").read_text()
    tables = compile_source(source, "tables.bas").tables
    assert len(tables) == 21
    items = next(t for t in tables if t.name == "items")
    assert [(c.name, c.type) for c in items.columns[:3]] == [
        ("id", "UUID"),
        ("item_code", "VARCHAR"),
        ("barcode", "VARCHAR"),
    ]
