"""Domain errors: what went wrong, in words a caller can act on (a message, the parameter at
fault, a stable code), and of which kind. No protocol's status: each front door maps the kind
itself (HTTP: api/errors.py; Realtime and Wyoming: their `error` events), so the core raises the
same error whichever door the request came through.

Kinds: `invalid_request` (the caller's mistake), `not_found` (no such model), `too_large`,
`rate_limit` (too much is waiting: try again later), `unavailable` (the server cannot serve it
now: shutting down, a queue timeout, a model not pulled) and `internal` (a failure of ours).
"""

from __future__ import annotations

from typing import ClassVar, Literal

Kind = Literal["invalid_request", "not_found", "too_large", "rate_limit", "unavailable", "internal"]

# OpenAI's error `type` for each kind: the vocabulary the OpenAI-shaped doors report in (HTTP,
# Realtime), and Wyoming's error code where an error has none of its own.
OPENAI_TYPES: dict[Kind, str] = {
    "invalid_request": "invalid_request_error",
    "not_found": "invalid_request_error",
    "too_large": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "unavailable": "server_error",
    "internal": "server_error",
}


class GatewayError(Exception):
    """A failure a caller is told about. Subclasses name the kind; `retry_after` (seconds) is a
    hint for refusals that pass."""

    kind: ClassVar[Kind] = "invalid_request"
    code: str | None = None

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.retry_after = message, param, retry_after
        if code is not None:
            self.code = code

    @property
    def type(self) -> str:
        """OpenAI's error type for this kind."""
        return OPENAI_TYPES[self.kind]


class InvalidRequest(GatewayError):
    """The request cannot be served as asked: a value out of range, audio that is not audio."""

    kind = "invalid_request"


class TooLarge(GatewayError):
    kind = "too_large"


class LimitReached(GatewayError):
    """Too much is already waiting (a queue, a session's turns, a connection's replies)."""

    kind = "rate_limit"


class Unavailable(GatewayError):
    """The server cannot serve this now (shutting down, no word timings from the model)."""

    kind = "unavailable"


class InternalError(GatewayError):
    kind = "internal"
    code = "internal_error"


class ModelLookupError(GatewayError):
    """A requested model cannot serve: see the two kinds below (neither is a subclass of the
    other, so the order of `except` clauses does not matter)."""

    def __init__(self, message: str, name: str, task: str, known: list[str] | None) -> None:
        super().__init__(message, "model")
        self.name, self.task, self.known = name, task, known or []


class UnknownModel(ModelLookupError):
    """No such model for this task."""

    kind = "not_found"
    code = "model_not_found"

    def __init__(self, name: str, task: str, known: list[str] | None = None) -> None:
        listed = ", ".join(known or [])
        super().__init__(f"model {name!r} does not exist; {task} models: {listed}", name, task,
                         known)  # fmt: skip


class ModelUnavailable(ModelLookupError):
    """The model exists but is not usable here (not pulled, corrupt)."""

    kind = "unavailable"
    code = "model_unavailable"

    def __init__(self, name: str, task: str, known: list[str] | None = None) -> None:
        message = f"model {name!r} is not available on this server; run `gateway models pull`"
        super().__init__(message, name, task, known)


def as_domain(exc: BaseException) -> GatewayError:
    """Any exception as the domain error a front door reports: itself, or an internal error
    (whose message gives nothing of ours away)."""
    if isinstance(exc, GatewayError):
        return exc
    return InternalError("the server failed to process the request")
