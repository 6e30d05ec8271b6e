"""Errors a turn can end with, each telling the caller how to answer."""

from __future__ import annotations


class PipelineError(Exception):
    """Root of the pipeline's errors."""


class TurnRejected(PipelineError):
    """The message cannot be processed as sent; the client should change it (a 4xx)."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class UnknownBot(TurnRejected):
    def __init__(self, bot: str) -> None:
        super().__init__("unknown_bot", f"no bot named {bot!r}", status=404)


class UnknownSession(TurnRejected):
    def __init__(self, session_id: str) -> None:
        super().__init__(
            "unknown_session", f"no session {session_id!r} for this user and bot", status=404
        )


class TurnFailed(PipelineError):
    """The turn failed on our side; its cause is logged and chained."""
