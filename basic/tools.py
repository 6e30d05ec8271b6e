"""A .bas file with PARAM/DESCRIPTION lines as an LLM tool: one JSON schema, two wrappings.

Rules (BASIC.md): tool name = file name; each PARAM is a property; OPTIONAL params are not
required, nor are those with a DEFAULT (kept in the schema);
integer -> integer, number/float/double/decimal/money -> number, boolean -> boolean,
list -> array, map/object -> object, anything else string (DATE gets format date, EMAIL format
email); LIKE gives an example, ENUM an enum.
"""

from __future__ import annotations

from typing import Any

from basic import nodes as n
from basic.compiler import Program

_TYPES = {
    "INTEGER": "integer",
    "INT": "integer",
    "LONG": "integer",
    "NUMBER": "number",
    "FLOAT": "number",
    "DOUBLE": "number",
    "DECIMAL": "number",
    "MONEY": "number",
    "CURRENCY": "number",
    "BOOLEAN": "boolean",
    "BOOL": "boolean",
    "LIST": "array",
    "ARRAY": "array",
    "MAP": "object",
    "OBJECT": "object",
    "JSON": "object",
}
_FORMATS = {
    "DATE": "date",
    "EMAIL": "email",
    "URL": "uri",
    "UUID": "uuid",
    "DATETIME": "date-time",
    "TIME": "time",
    "HOUR": "time",
}


def _constant(expr: n.Expr | None) -> Any:
    """The value of a literal (PARAM options must be literals)."""
    if expr is None:
        return None
    if isinstance(expr, n.Const):
        return expr.value
    if isinstance(expr, n.ListLiteral):
        return [_constant(item) for item in expr.items]
    if isinstance(expr, n.Unary) and expr.op == "-" and isinstance(expr.operand, n.Const):
        return -expr.operand.value
    if isinstance(expr, n.Interpolated):
        return "".join(p if isinstance(p, str) else "${...}" for p in expr.parts)
    return None


def is_tool(program: Program) -> bool:
    """A dialog is offered as a tool when it declares PARAMs or a DESCRIPTION."""
    return bool(program.params) or program.description is not None


def parameters_schema(program: Program) -> dict[str, Any]:
    """The JSON schema of the tool's arguments."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in program.params:
        prop: dict[str, Any] = {"type": _TYPES.get(param.type, "string")}
        if param.type in _FORMATS:
            prop["format"] = _FORMATS[param.type]
        description = _constant(param.description)
        if description:
            prop["description"] = str(description)
        example = _constant(param.like)
        if example is not None:
            prop["examples"] = [example]
        enum = _constant(param.enum)
        if isinstance(enum, list) and enum:
            prop["enum"] = enum
        elif isinstance(enum, str) and enum:
            prop["enum"] = [item.strip() for item in enum.split(",")]
        default = _constant(param.default)
        if default is not None:
            prop["default"] = default
        properties[param.name] = prop
        if not param.optional and param.default is None:
            required.append(param.name)
    return {"type": "object", "properties": properties, "required": required}


def description(program: Program) -> str:
    text = _constant(program.description.text) if program.description is not None else None
    return str(text) if text else f"Run the {program.name} dialog"


def openai_tool(program: Program) -> dict[str, Any]:
    """For OpenAI chat completions ``tools=[...]``."""
    return {
        "type": "function",
        "function": {
            "name": program.name,
            "description": description(program),
            "parameters": parameters_schema(program),
        },
    }


def anthropic_tool(program: Program) -> dict[str, Any]:
    """For Anthropic messages ``tools=[...]``."""
    return {
        "name": program.name,
        "description": description(program),
        "input_schema": parameters_schema(program),
    }
