"""Structured JSON logs on stderr, one object per line. Never a token or a secret.

Decision lines carry the request id, outcome, reason, status and path (query string dropped,
since queries can carry keys); denies log at INFO, allows at DEBUG (the hot path stays quiet).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from extauthz.model import Allow, Decision, RequestView

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}
decision_log = logging.getLogger("extauthz.decision")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` per line; ``ts`` is RFC 3339 UTC.

    An exception is reduced to its type name: tracebacks end with the exception's message, and
    a message from a third-party library is not known to be free of secrets.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["error_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route all logging to ``stream`` (stderr) as JSON lines; both commands (serve, mint)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a line per health probe; the app logs what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def log_decision(
    view: RequestView, decision: Decision, status: int, elapsed: float, outcome: str = ""
) -> None:
    """One line per decision (denies at INFO, allows at DEBUG); ``outcome`` overrides the
    message (``would_deny`` in shadow mode)."""
    allowed = isinstance(decision, Allow)
    level = logging.DEBUG if allowed else logging.INFO
    if not decision_log.isEnabledFor(level):
        return
    identity = decision.identity
    decision_log.log(
        level,
        outcome or ("allow" if allowed else "deny"),
        extra={
            "request_id": view.request_id,
            "method": view.method,
            "path": view.path.partition("?")[0][:256],
            "status": status,
            "reason": decision.reason.value,
            "role": decision.role.value if decision.role else None,
            "user_id": identity.user_id if identity else None,
            "team_id": identity.team_id if identity else None,
            "team_source": decision.team_source if isinstance(decision, Allow) else None,
            "model": decision.model if isinstance(decision, Allow) else None,
            "duration_ms": round(elapsed * 1000, 3),
        },
    )
