"""The keywords that call the host: their arity and the capability (Host method) they need.

Adding a host keyword means: a spelling in grammar.lark (STMT_KEYWORD or VALUE_KEYWORD), a row
here, and a case in interpreter.HostCall if it needs more than calling the method with its
arguments.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keyword:
    name: str
    capability: str | None  # Host method; None when the interpreter handles it itself
    min_args: int
    max_args: int


def _table(*rows: Keyword) -> dict[str, Keyword]:
    return {row.name: row for row in rows}


STATEMENTS = _table(
    Keyword("SET BOT MEMORY", "set_bot_memory", 2, 2),
    Keyword("SET USER MEMORY", "set_user_memory", 2, 2),
    Keyword("SET HEADER", None, 2, 2),
    Keyword("USE KB", "use_kb", 1, 1),
    Keyword("CLEAR KB", "clear_kb", 0, 1),
    Keyword("USE TOOL", "use_tool", 1, 1),
    Keyword("ADD TOOL", "use_tool", 1, 1),
    Keyword("CLEAR TOOLS", "clear_tools", 0, 0),
    Keyword("SEND MAIL", "send_mail", 3, 4),  # General Bots' 4th argument: attachments
    Keyword("TALK TO", "talk_to", 2, 2),
    Keyword("SEND FILE TO", "send_file_to", 2, 3),  # recipient, file[, caption]
    Keyword("SAVE", "save", 2, 100),
    Keyword("INSERT", "insert", 2, 100),
    Keyword("UPDATE", "update", 3, 3),
    Keyword("WAIT", None, 1, 1),
    Keyword("CLEAR HEADERS", None, 0, 0),
    Keyword("USE WEBSITE", "use_website", 1, 2),
    Keyword("CLEAR WEBSITES", "clear_websites", 0, 0),
    Keyword("ADD BOT", "add_bot", 3, 3),  # ADD BOT name WITH TRIGGER|TOOLS|SCHEDULE value
    Keyword("REMOVE BOT", "remove_bot", 1, 1),
    Keyword("SET USER", "set_user", 1, 1),
    Keyword("CREATE DRAFT", "create_draft", 3, 3),
    Keyword("WRITE", "write_file", 2, 2),
    Keyword("SET TABLE", "set_rows", 3, 3),  # SET "table", "filter", "field=value"
    Keyword("STOP", "stop_player", 0, 0),  # the player PLAY opened closes
)

VALUES = _table(
    Keyword("GET BOT MEMORY", "get_bot_memory", 1, 1),
    Keyword("GET USER MEMORY", "get_user_memory", 1, 1),
    Keyword("GET", None, 1, 1),  # url -> http, "session.x" -> session_field, else read_file
    Keyword("POST", "http", 1, 2),
    Keyword("PUT", "http", 1, 2),
    Keyword("PATCH", "http", 1, 2),
    Keyword("DELETE HTTP", "http", 1, 1),
    Keyword("DELETE", "delete", 1, 2),  # DELETE "t.csv", "filter"; DELETE "https://..." is HTTP
    Keyword("FIND", "find", 1, 2),
    Keyword("LLM", "llm", 1, 1),
    # result = SEND TEMPLATE name, recipient, channel[, variables] (or name[, params] to the
    # user of the conversation); SEND TEMPLATE TO recipient, name, or General Bots'
    # SEND_TEMPLATE_TO / BULK_SEND name, recipients, channel[, variables]
    Keyword("SEND TEMPLATE", "send_template", 1, 10),
    Keyword("SEND TEMPLATE TO", "send_template_to", 2, 4),
    Keyword("BULK SEND", "send_template_to", 3, 4),
    Keyword("LIST BOTS", "list_bots", 0, 0),
    Keyword("FILTER", "filter_rows", 2, 2),
    Keyword("AGGREGATE", "aggregate", 3, 3),
    # General Bots': name | department, priority [, reason] | a map (transfer_to_human_ex);
    # its value is the transfer's result (success, status, queue_position, message)
    Keyword("TRANSFER TO HUMAN", "transfer_to_human", 0, 3),
    # PLAY source [WITH OPTIONS "autoplay,loop,…"]: its value is the player's JSON
    Keyword("PLAY", "play", 1, 2),
)
