"""Mint one credential: get the OIDC token, exchange it, render the file Envoy reads.

This is the only place that holds a token and the credential it buys at the same time, so it is
also where a refused token is dropped from the cache (the next attempt fetches a fresh one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from extauthz.mint.answers import AccessToken
from extauthz.mint.aws import AwsCredentials, assume_role_with_web_identity
from extauthz.mint.azure import exchange_client_assertion
from extauthz.mint.errors import ExchangeError
from extauthz.mint.google import (
    ExternalAccount,
    exchange_subject_token,
    generate_access_token,
    read_subject,
)
from extauthz.mint.plan import (
    AwsStaticSpec,
    AwsWebIdentitySpec,
    AzureEntraSpec,
    CredentialSpec,
    GoogleVertexSpec,
    StaticSecretSpec,
)
from extauthz.mint.sinks import render_aws_credentials, render_sds_secret
from extauthz.mint.sources import OidcRef, OidcTokens
from extauthz.mint.transport import HttpClient


@dataclass(frozen=True, slots=True)
class Minted:
    """A credential ready to write: the file's text and when the credential expires."""

    filename: str
    text: str
    expires_at: float | None
    detail: str = ""

    def __repr__(self) -> str:
        return f"Minted({self.filename!r}, expires_at={self.expires_at!r})"


@contextlib.contextmanager
def _forget_if_refused(tokens: OidcTokens, ref: OidcRef | None) -> Iterator[None]:
    """On an ExchangeError, drop ``ref``'s cached token: a refused token is fetched afresh."""
    try:
        yield
    except ExchangeError:
        if ref is not None:
            tokens.forget(ref)
        raise


async def mint(
    spec: CredentialSpec, http: HttpClient, tokens: OidcTokens, clock: Callable[[], float]
) -> Minted:
    """Produce the file content for ``spec``; raises MintError subclasses, never returns partial."""
    match spec:
        case AwsWebIdentitySpec():
            token = await tokens.get(spec.token)
            with _forget_if_refused(tokens, spec.token):
                creds = await assume_role_with_web_identity(
                    http,
                    endpoint=spec.sts_endpoint,
                    role_arn=spec.role_arn,
                    session_name=spec.session_name,
                    web_identity_token=token,
                )
            return Minted(
                spec.filename,
                render_aws_credentials(creds),
                creds.expires_at,
                detail=creds.assumed_role_arn,
            )
        case AzureEntraSpec():
            assertion = await tokens.get(spec.token)
            with _forget_if_refused(tokens, spec.token):
                access = await exchange_client_assertion(
                    http,
                    authority_host=spec.authority_host,
                    tenant_id=spec.tenant_id,
                    client_id=spec.client_id,
                    scope=spec.scope,
                    assertion=assertion,
                    now=clock(),
                )
            return Minted(
                spec.filename,
                render_sds_secret(spec.name, f"Bearer {access.token.reveal()}"),
                access.expires_at,
            )
        case GoogleVertexSpec():
            access = await vertex_access_token(spec.account, http, tokens, clock)
            return Minted(
                spec.filename,
                render_sds_secret(spec.name, f"Bearer {access.token.reveal()}"),
                access.expires_at,
                detail=spec.account.service_account or "",
            )
        case AwsStaticSpec():
            creds = AwsCredentials(
                spec.access_key_id, spec.secret_access_key, spec.session_token, None
            )
            return Minted(spec.filename, render_aws_credentials(creds), None)
        case StaticSecretSpec():
            return Minted(spec.filename, render_sds_secret(spec.name, spec.value.reveal()), None)


async def vertex_access_token(
    account: ExternalAccount, http: HttpClient, tokens: OidcTokens, clock: Callable[[], float]
) -> AccessToken:
    """The subject token, exchanged at Google STS, then (with an impersonation URL) turned into
    the service account's token by IAM Credentials. A subject STS refused is not reused."""
    subject = account.subject
    ref = subject if isinstance(subject, OidcRef) else None
    if isinstance(subject, OidcRef):
        subject_token = await tokens.get(subject)
    else:
        subject_token = await read_subject(http, subject)
    with _forget_if_refused(tokens, ref):
        federated = await exchange_subject_token(http, account, subject_token, now=clock())
    if account.impersonation_url is None:
        return federated
    return await generate_access_token(http, account, federated.token.reveal())
