"""Compile the identity-provider keys of ``litellm_jwtauth``: ``issuers``, ``custom_validate`` and
``oidc_userinfo_*`` (LiteLLM's checks, and ours where LiteLLM would fail only at request time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from extauthz.config.schema import REFUSED_JWTAUTH, ExtauthzSettings, IssuerEntry, JwtAuthSettings
from extauthz.config.urlcheck import is_url
from extauthz.identity.claims import parse_field_path
from extauthz.identity.customvalidate import CustomValidateError, Validator, load_validator
from extauthz.identity.fields import ClaimField, ClaimFields
from extauthz.identity.jwks import split_urls
from extauthz.identity.providers import IssuerClaims
from extauthz.identity.tokens import TokenRules

_WHERE = "general_settings.litellm_jwtauth"
# Entry keys LiteLLM has that are not implemented per issuer, and why: the schema's refused
# keys an entry declares (only so they can be refused here by name).
_REFUSED_ENTRY_KEYS = MappingProxyType(
    {k: why for k, why in REFUSED_JWTAUTH.items() if k in IssuerEntry.model_fields}
)
# LiteLLM's normalized claim for each per-issuer field (what custom_validate sees).
_NORMALIZED = (
    ("user_id", "_litellm_user_id"),
    ("email", "_litellm_user_email"),
    ("team_id", "_litellm_team_id"),
    ("team_ids", "_litellm_team_ids"),
    ("org_id", "_litellm_org_id"),
    ("end_user_id", "_litellm_end_user_id"),
)


@dataclass(frozen=True, slots=True)
class CompiledProviders:
    """What the ``issuers`` entries compile to: token rules and claim fields per issuer (the
    policy), and each issuer's key URLs (the runtime)."""

    token_rules: tuple[tuple[str, TokenRules], ...] = ()
    claims: Mapping[str, IssuerClaims] = field(default_factory=dict)
    key_urls: tuple[tuple[str, tuple[str, ...]], ...] = ()


def claim_field(name: str | None, fallback: ClaimField | None = None) -> ClaimField | None:
    """The ``*_jwt_field`` setting ``name`` parsed; ``fallback`` (the global field, for an
    ``issuers`` entry) when it is not set."""
    if name is None:
        return fallback
    return ClaimField(name, parse_field_path(name), fallback)


def _entry(
    i: int,
    entry: IssuerEntry,
    ours: ExtauthzSettings,
    fields: ClaimFields,
    team_id_default: str | None,
    email_domains: frozenset[str] | None,
    problems: list[str],
) -> tuple[TokenRules, IssuerClaims, tuple[str, ...]]:
    where = f"{_WHERE}.issuers[{i}]"
    for key, why in _REFUSED_ENTRY_KEYS.items():
        if getattr(entry, key) is not None:
            problems.append(
                f"{where}.{key}: not implemented by extauthz ({why}); remove it or set it to null"
            )
    if entry.audience is None and not entry.disable_audience_validation:
        problems.append(
            f"{where}: issuer {entry.issuer!r} must set audience (or, only if the provider "
            "cannot give one, disable_audience_validation: true), as LiteLLM requires"
        )
    if entry.audience is not None and entry.disable_audience_validation:
        problems.append(
            f"{where}: audience and disable_audience_validation: true cannot be set together"
        )
    if entry.audience == []:  # PyJWT refuses every token then; TokenRules would check none
        problems.append(
            f"{where}.audience: an empty list names no audience; name the audience(s) the "
            "tokens carry (or, only if the provider cannot give one, "
            "disable_audience_validation: true)"
        )
    # LiteLLM's fallback when no jwks_url: the issuer's OpenID discovery document.
    url = entry.jwks_url or f"{entry.issuer.rstrip('/')}/.well-known/openid-configuration"
    urls = split_urls(url)
    if not urls or not all(is_url(u, ("http", "https", "file"), host=False) for u in urls):
        problems.append(
            f"{where}.jwks_url: not an https://, http:// or file:// URL (without jwks_url the "
            "issuer must be a URL whose /.well-known/openid-configuration can be fetched)"
        )
    audiences = entry.audience if entry.audience is not None else []
    rules = TokenRules(
        audiences=frozenset([audiences] if isinstance(audiences, str) else audiences),
        issuers=frozenset({entry.issuer}),  # the verified iss must still be this entry's
        leeway=ours.leeway_seconds,
        require_exp=ours.require_exp,
        max_token_bytes=ours.max_token_bytes,
    )
    own = ClaimFields(
        user_id=claim_field(entry.user_id_jwt_field, fields.user_id),
        team_id=claim_field(entry.team_id_jwt_field, fields.team_id),
        team_ids=claim_field(entry.team_ids_jwt_field, fields.team_ids),
        org_id=claim_field(entry.org_id_jwt_field, fields.org_id),
        end_user_id=claim_field(entry.end_user_id_jwt_field, fields.end_user_id),
        email=claim_field(entry.user_email_jwt_field, fields.email),
        roles=fields.roles,
    )
    mapped = tuple(
        (normalized, f)
        for attr, normalized in _NORMALIZED
        if (f := getattr(own, attr)) is not None and f is not getattr(fields, attr)
    )
    return rules, IssuerClaims(own, team_id_default, email_domains, mapped), urls


def compile_providers(
    enable_jwt_auth: bool,
    jwt: JwtAuthSettings,
    ours: ExtauthzSettings,
    fields: ClaimFields,
    team_id_default: str | None,
    email_domains: frozenset[str] | None,
    problems: list[str],
) -> CompiledProviders:
    """The ``issuers`` entries, checked; userinfo settings checked (they compile elsewhere)."""
    _check_userinfo(enable_jwt_auth, jwt, ours, problems)
    if not jwt.issuers:
        return CompiledProviders()
    rules: list[tuple[str, TokenRules]] = []
    claims: dict[str, IssuerClaims] = {}
    key_urls: list[tuple[str, tuple[str, ...]]] = []
    for i, entry in enumerate(jwt.issuers):
        if entry.issuer in claims:
            problems.append(
                f"{_WHERE}.issuers[{i}].issuer: {entry.issuer!r} appears twice; LiteLLM uses "
                "only the first entry, so merge them"
            )
            continue
        token_rules, issuer_claims, urls = _entry(
            i, entry, ours, fields, team_id_default, email_domains, problems
        )
        rules.append((entry.issuer, token_rules))
        claims[entry.issuer] = issuer_claims
        key_urls.append((entry.issuer, urls))
    return CompiledProviders(tuple(rules), claims, tuple(key_urls))


def _check_userinfo(
    enable_jwt_auth: bool, jwt: JwtAuthSettings, ours: ExtauthzSettings, problems: list[str]
) -> None:
    if not jwt.oidc_userinfo_enabled:
        return
    if not enable_jwt_auth:
        problems.append(
            f"{_WHERE}.oidc_userinfo_enabled needs general_settings.enable_jwt_auth: true "
            "(as in LiteLLM, userinfo is part of JWT auth)"
        )
    endpoint = jwt.oidc_userinfo_endpoint
    if not endpoint:
        problems.append(
            f"{_WHERE}.oidc_userinfo_enabled needs oidc_userinfo_endpoint (your provider's "
            "userinfo URL, the 'userinfo_endpoint' of its OpenID discovery document)"
        )
    elif not is_url(endpoint):
        problems.append(f"{_WHERE}.oidc_userinfo_endpoint: not an https:// or http:// URL")
    if ours.non_jwt_tokens == "passthrough":
        problems.append(
            f"{_WHERE}.oidc_userinfo_enabled and extauthz.non_jwt_tokens: passthrough cannot be "
            "used together: a non-JWT token would be both an access token for the userinfo "
            "endpoint and a key for the upstream; choose one"
        )


def load_custom_validate(
    jwt: JwtAuthSettings, config_path: str, problems: list[str]
) -> Validator | None:
    """Import ``custom_validate`` now, so a config that names a missing function is refused."""
    if jwt.custom_validate is None:
        return None
    try:
        return load_validator(jwt.custom_validate, config_path)
    except CustomValidateError as exc:
        problems.append(f"{_WHERE}.custom_validate: {exc}")
        return None
