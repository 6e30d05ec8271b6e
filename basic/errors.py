"""The exception hierarchy of the BASIC package: one root, structured subclasses."""

from __future__ import annotations


class BasicError(Exception):
    """Root of every error raised by the BASIC package."""


class BasicSyntaxError(BasicError):
    """A parse or analysis error, located at ``file:line:col``."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{file}:{line}:{column}: {message}")
        self.file = file
        self.line = line
        self.column = column
        self.message = message


class BasicRuntimeError(BasicError):
    """An error while running a dialog, located at ``file:line``; the caller ends the dialog."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class MissingCapability(BasicRuntimeError):
    """The host does not implement a capability the dialog needs (named in the message)."""

    def __init__(self, file: str, line: int, capability: str, keyword: str) -> None:
        message = f"{keyword} needs the host capability '{capability}', which is not available"
        super().__init__(file, line, message)
        self.capability = capability
        self.keyword = keyword


class HostUnavailable(BasicError):
    """The host's infrastructure failed (a store or provider cannot be reached): no fault of the
    dialog, so ``ON ERROR RESUME NEXT`` does not catch it and it does not end the dialog; it
    leaves the interpreter, and the caller fails the turn so that it is retried."""

    def __init__(self, keyword: str, message: str) -> None:
        super().__init__(f"{keyword}: {message}")
        self.keyword = keyword
        self.message = message


class ScriptError(Exception):
    """Raised by value operations and built-ins without a location; the interpreter adds it."""


class BasicWarning:
    """Something General Bots tolerates but that will not do what it says (``file:line:col``),
    such as ``USE TOOL`` naming a tool the package lacks."""

    __slots__ = ("column", "file", "line", "message")

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: warning: {self.message}"

    def __repr__(self) -> str:
        return f"BasicWarning({str(self)!r})"
