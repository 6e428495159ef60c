"""What the email-domain gate needs of a token's email: a real address, and whether it is verified.

Addresses are parsed by email-validator (syntax only: ``check_deliverability=False``, so never a
DNS lookup; decisions do no I/O). Parsing costs ~20 µs, so it runs where the identity is derived,
once per token and policy, never per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import email_validator

VERIFIED_CLAIM = "email_verified"  # OpenID Connect's standard claim


class EmailCheck(NamedTuple):
    """``domain``: the ASCII, lower-case domain of a valid address not said to be unverified;
    else None and ``problem`` says why."""

    domain: str | None
    problem: str | None = None


def _parse(address: str) -> email_validator.ValidatedEmail:
    return email_validator.validate_email(
        address,
        check_deliverability=False,  # no DNS, ever
        globally_deliverable=False,  # corp.local and the like are real addresses inside a company
    )


def check_email(claims: Mapping[str, Any], address: str | None) -> EmailCheck:
    """Judge ``address`` (the canonical email id) and the token's ``email_verified``.

    ``email_verified`` true, "true" (any case) or absent (not asserted) lets the address count;
    false or "false" (some IdPs send strings) does not, and nor does any other value (fail closed).
    """
    if address is None:
        return EmailCheck(None, "the token has no email")
    if VERIFIED_CLAIM in claims:
        verified = claims[VERIFIED_CLAIM]
        if isinstance(verified, str):
            verified = {"true": True, "false": False}.get(verified.lower(), verified)
        if verified is False:
            return EmailCheck(None, f"the token says its email is not verified ({VERIFIED_CLAIM})")
        if verified is not True:
            return EmailCheck(
                None, f"{VERIFIED_CLAIM} is neither true nor false, so the email is not trusted"
            )
    try:
        parsed = _parse(address)
    except email_validator.EmailNotValidError as exc:
        return EmailCheck(None, f"{address!r} is not a valid email address ({exc})")
    return EmailCheck(parsed.ascii_domain.lower())


def email_domain(domain: str) -> str | None:
    """A configured domain in the form ``check_email`` compares (ASCII, lower case); None if no
    address can have it."""
    try:
        return _parse(f"x@{domain}").ascii_domain.lower()
    except email_validator.EmailNotValidError:
        return None
