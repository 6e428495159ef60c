"""What the email-domain gate needs of a token's email: a real address, and whether it is verified.

Addresses are parsed by email-validator (syntax only: ``check_deliverability=False``, so never a
DNS lookup; decisions do no I/O). It runs where the identity is derived, once per token and
policy, never per request; still, a full parse costs ~70 µs, as much as the token's signature
check. A plain ASCII address (dot-atom local part, letter-digit-hyphen labels, no IDNA, no
special-use domain) is judged by one regex instead: a strict subset of what email-validator
accepts, with the same domain (a differential property test holds the two together).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import email_validator

VERIFIED_CLAIM = "email_verified"  # OpenID Connect's standard claim

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
PLAIN_ADDRESS = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@((?:{_LABEL}\.)+{_TLD})")
"""Addresses the fast path judges; anything else goes to email-validator."""
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def plain_domain(address: str) -> str | None:
    """The lower-case domain of a plain ASCII address email-validator would accept, or None
    (not plain: ask email-validator)."""
    if len(address) > 254:
        return None
    match = PLAIN_ADDRESS.fullmatch(address)
    if match is None:
        return None
    domain = match.group(1).lower()
    if (
        len(address) - len(domain) - 1 > 64  # the local part
        or "--" in domain  # IDNA's rules for labels like "xn--" and "ab--c": the library decides
        or domain.rpartition(".")[2] in _SPECIAL_USE  # the regex requires a dot
    ):
        return None
    return domain


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
    domain = plain_domain(address)
    if domain is not None:
        return EmailCheck(domain)
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
