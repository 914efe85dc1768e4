"""The one error type of the HTTP layer: a status code, a stable ``code`` and a message for the client."""

from __future__ import annotations


class ApiError(Exception):
    """A request the server refuses: answered as ``{"error": {"code", "message"}}`` with ``status``.

    ``code`` is a stable machine-readable name (``too_large``, ``unsupported_image``...):
    clients branch on it, never on the message.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}
