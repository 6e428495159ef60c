"""Structured JSON logs on stderr, one object per line. Never a token or a secret.

Decision lines carry the request id, outcome, reason, status and path (query string dropped,
since queries can carry keys); denies log at INFO, allows at DEBUG (the hot path stays quiet).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from extauthz.policy.types import Allow, Decision, RequestView

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
decision_log = logging.getLogger("extauthz.decision")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["error_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def setup_logging(level: str = "info") -> None:
    """Route all logging to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime


def log_decision(view: RequestView, decision: Decision, status: int, elapsed: float) -> None:
    """One line per decision (denies at INFO, allows at DEBUG)."""
    allowed = isinstance(decision, Allow)
    level = logging.DEBUG if allowed else logging.INFO
    if not decision_log.isEnabledFor(level):
        return
    identity = decision.identity
    decision_log.log(
        level,
        "allow" if allowed else "deny",
        extra={
            "request_id": view.request_id,
            "method": view.method,
            "path": view.path.partition("?")[0][:256],
            "status": status,
            "reason": decision.reason.value,
            "role": decision.role.value if decision.role else None,
            "user_id": identity.user_id if identity else None,
            "team_id": identity.team_id if identity else None,
            "model": decision.model if isinstance(decision, Allow) else None,
            "duration_ms": round(elapsed * 1000, 3),
        },
    )
