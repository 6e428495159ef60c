"""aws.py and azure.py: the STS and Entra exchanges, their answers and their refusals."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from extauthz.mint.aws import (
    assume_role_with_web_identity,
    parse_assume_role_response,
    parse_sts_error,
)
from extauthz.mint.azure import exchange_client_assertion, parse_token_response
from extauthz.mint.errors import ExchangeError, TransportError
from extauthz.mint.minter import mint
from extauthz.mint.plan import AwsWebIdentitySpec
from extauthz.mint.redact import describe_token, scrub
from extauthz.mint.sources import OidcRef, OidcTokens
from extauthz.mint.transport import HttpClient

from .standins import Cloud, ServerThread, make_jwt

ROLE = "arn:aws:iam::123456789012:role/bedrock-invoke"


async def sts(cloud: Cloud, http: HttpClient, token: str, role: str = ROLE):  # type: ignore[no-untyped-def]
    return await assume_role_with_web_identity(
        http,
        endpoint=cloud.sts.url,
        role_arn=role,
        session_name="litellm-session",
        web_identity_token=token,
    )


class TestSts:
    async def test_web_identity_token_buys_temporary_credentials(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """The Query API form goes out; AccessKeyId, secret, session token, expiry come back."""
        token = cloud.issuer.issue("https://accounts.google.com", "sts.amazonaws.com", "sub-1")
        creds = await sts(cloud, http, token)
        issued = cloud.sts.issued[creds.access_key_id]
        assert creds.secret_access_key.reveal() == issued["SecretAccessKey"]
        assert creds.session_token is not None
        assert creds.session_token.reveal() == issued["SessionToken"]
        assert creds.expires_at == pytest.approx(time.time() + 3600, abs=5)
        assert creds.assumed_role_arn.endswith(":assumed-role/bedrock-invoke/litellm-session")
        assert cloud.sts.requests == [
            {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": "2011-06-15",
                "RoleArn": ROLE,
                "RoleSessionName": "litellm-session",
                "WebIdentityToken": token,
                "DurationSeconds": "3600",
            }
        ]

    async def test_a_token_sts_refused_is_not_reused_from_the_cache(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """oidc/google is cached for 3540 s, but after a refusal the next attempt fetches a
        fresh token from the metadata server; after a success the cached one is reused."""
        tokens = OidcTokens(http, cloud.env(), time.time)
        spec = AwsWebIdentitySpec(
            "m", "model_list[0]", OidcRef("google", "sts.amazonaws.com"), ROLE, "s-1",
            cloud.sts.url,
        )  # fmt: skip
        cloud.sts.refuse = (400, "InvalidIdentityToken", "Incorrect token audience")
        with pytest.raises(ExchangeError):
            await mint(spec, http, tokens, time.time)
        cloud.sts.refuse = None
        await mint(spec, http, tokens, time.time)
        await mint(spec, http, tokens, time.time)
        assert len(cloud.gce.requests) == 2

    async def test_invalid_identity_token_names_aud_and_iss_never_the_token(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """A wrong audience: STS's code and message, the token's aud/iss/sub, a trust hint."""
        token = cloud.issuer.issue("https://accounts.google.com", "wrong-aud", "sub-1")
        with pytest.raises(ExchangeError) as info:
            await sts(cloud, http, token)
        message = str(info.value)
        assert info.value.code == "InvalidIdentityToken"
        assert "HTTP 400 InvalidIdentityToken: Incorrect token audience" in message
        assert "aud='wrong-aud' iss='https://accounts.google.com' sub='sub-1'" in message
        assert "trust policy" in message and "RequestId" in message
        assert token not in message and token.split(".")[1] not in message

    async def test_access_denied_names_the_role(self, cloud: Cloud, http: HttpClient) -> None:
        """A role the token may not assume: 403 AccessDenied with the role ARN."""
        token = cloud.issuer.issue("https://accounts.google.com", "sts.amazonaws.com", "s")
        other = "arn:aws:iam::123456789012:role/other"
        with pytest.raises(ExchangeError, match=f"for {other} \\(HTTP 403 AccessDenied"):
            await sts(cloud, http, token, role=other)

    async def test_an_outage_is_a_service_unavailable_refusal(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """STS 503 ServiceUnavailable comes back with its code, for the retry loop."""
        cloud.sts.outage = True
        with pytest.raises(ExchangeError) as info:
            await sts(cloud, http, "x.y.z")
        assert info.value.code == "ServiceUnavailable"

    def test_credentials_are_parsed_from_the_documented_xml(self) -> None:
        """AWS's documentation example parses (namespaced, with extra elements)."""
        body = b"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>amzn1.account.AF6RHO7KZU5XRVQJGXK6HB56KR2A</SubjectFromWebIdentityToken>
    <Audience>client.5498841531868486423.1548@apps.example.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/FederatedWebIdentityRole/app1</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:app1</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <Expiration>2014-10-24T23:00:23Z</Expiration>
      <AccessKeyId>ASgeIAIOSFODNN7EXAMPLE</AccessKeyId>
    </Credentials>
    <Provider>www.amazon.com</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
        with pytest.raises(ExchangeError, match="unexpected characters"):
            parse_assume_role_response(body)  # lower-case letters in the documented key id
        creds = parse_assume_role_response(
            body.replace(b"ASgeIAIOSFODNN7EXAMPLE", b"ASIAIOSFODNN7EXAMPLE")
        )
        assert creds.access_key_id == "ASIAIOSFODNN7EXAMPLE"
        assert creds.expires_at == 1414191623.0

    @pytest.mark.parametrize(
        "body",
        [
            b"<html>502 Bad Gateway</html>",
            b"not xml",
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ErrorResponse><Error>'
            b"<Code>&a;</Code></Error></ErrorResponse>",
        ],
    )
    def test_bodies_that_are_not_sts_documents_are_not_trusted(self, body: bytes) -> None:
        """HTML, garbage and anything with a DTD yield no code and no credentials."""
        assert parse_sts_error(body) == ("", "", "")
        with pytest.raises(ExchangeError):
            parse_assume_role_response(body)


async def entra(cloud: Cloud, http: HttpClient, assertion: str, client_id: str | None = None):  # type: ignore[no-untyped-def]
    return await exchange_client_assertion(
        http,
        authority_host=cloud.entra.url,
        tenant_id=cloud.entra.tenant_id,
        client_id=client_id or cloud.entra.client_id,
        scope="https://cognitiveservices.azure.com/.default",
        assertion=assertion,
        now=1000.0,
    )


class TestEntra:
    async def test_client_assertion_buys_an_access_token(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """The v2 token endpoint gets the client-assertion grant; access_token and expiry return."""
        assertion = cloud.issuer.issue(
            "https://accounts.google.com", "api://AzureADTokenExchange", "s"
        )
        access = await entra(cloud, http, assertion)
        assert access.token.reveal() == cloud.entra.issued[-1]
        assert access.expires_at == 1000.0 + 3599
        assert cloud.entra.requests == [
            {
                "grant_type": "client_credentials",
                "client_id": cloud.entra.client_id,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                "scope": "https://cognitiveservices.azure.com/.default",
            }
        ]

    async def test_no_federated_credential_names_aud_and_iss_never_the_assertion(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """invalid_client (AADSTS700211) is reported with the assertion's claims and a hint."""
        assertion = cloud.issuer.issue(
            "https://token.actions.githubusercontent.com", "api://other", "repo:o/r"
        )
        with pytest.raises(ExchangeError) as info:
            await entra(cloud, http, assertion)
        message = str(info.value)
        assert info.value.code == "invalid_client"
        assert "HTTP 401 invalid_client: AADSTS700211" in message
        assert "aud='api://other' iss='https://token.actions.githubusercontent.com'" in message
        assert "federated identity credential" in message
        assert assertion not in message

    async def test_unknown_client_is_reported_with_its_id(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """unauthorized_client (AADSTS700016) names the client ID."""
        with pytest.raises(ExchangeError, match=r"client nope .*AADSTS700016"):
            await entra(cloud, http, "a.b.c", client_id="nope")

    async def test_an_outage_without_json_is_reported_plainly(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """A 503 HTML page has no OAuth error; the status is reported."""
        cloud.entra.outage = True
        with pytest.raises(ExchangeError, match="HTTP 503 without an OAuth error document"):
            await entra(cloud, http, "a.b.c")

    @pytest.mark.parametrize(
        ("body", "ok"),
        [
            (b'{"access_token": "t", "expires_in": "3599"}', True),
            (b'{"access_token": "t", "expires_in": 60}', True),
            (b'{"access_token": "t"}', False),
            (b'{"expires_in": 60}', False),
            (b'{"access_token": "a b", "expires_in": 60}', False),
            (b"[]", False),
        ],
    )
    def test_token_answers_need_access_token_and_expires_in(self, body: bytes, ok: bool) -> None:
        """expires_in may be a string of digits (older endpoints); both fields are required."""
        if ok:
            assert parse_token_response(body, 0.0).token.reveal() == "t"
        else:
            with pytest.raises(ExchangeError):
                parse_token_response(body, 0.0)


class TestRedaction:
    def test_describe_token_shows_claims_and_nothing_else(self) -> None:
        """aud/iss/sub only, and a note for a token that is not a JWT."""
        token = make_jwt({"aud": ["a", "b"], "iss": "i", "email": "x@example.com"})
        assert describe_token(token) == "the token's aud='[\"a\", \"b\"]' iss='i'"
        assert describe_token("opaque") == "the token is not a JWT"

    def test_scrub_removes_echoed_secrets_and_cuts_long_text(self) -> None:
        """A service echoing the token has it replaced; long messages are cut."""
        assert scrub("bad token abc.def here", ["abc.def"]) == "bad token <redacted> here"
        assert len(scrub("x" * 1000, [])) == 501


class TestTransport:
    async def test_an_oversized_answer_is_refused(self, server_thread: ServerThread) -> None:
        """More than 64 KiB from a service is cut off with an error, chunked or not."""

        async def big(request: web.Request) -> web.StreamResponse:
            if request.query.get("chunked"):
                resp = web.StreamResponse()
                await resp.prepare(request)
                for _ in range(10):
                    await resp.write(b"x" * 10_000)
                await resp.write_eof()
                return resp
            return web.Response(body=b"x" * 70_000)

        app = web.Application()
        app.router.add_get("/", big)
        port = server_thread.serve(app)
        import ssl

        client = HttpClient(ssl.create_default_context(), timeout_seconds=5)
        try:
            with pytest.raises(TransportError, match="70000 bytes, more than the 65536-byte"):
                await client.request("GET", f"http://127.0.0.1:{port}/", what="big")
            with pytest.raises(TransportError, match="more than the 65536-byte limit"):
                await client.request("GET", f"http://127.0.0.1:{port}/?chunked=1", what="big")
        finally:
            await client.close()

    async def test_a_malformed_answer_never_shows_the_url_query(self) -> None:
        """A broken HTTP answer is a TransportError naming the service, not the URL: a query
        (a credential_source.url's signature, say) may be a secret."""
        import asyncio
        import ssl

        async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(broken, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(ssl.create_default_context(), timeout_seconds=5)
        try:
            with pytest.raises(TransportError, match=r"^svc: a malformed HTTP answer") as info:
                await client.request("GET", f"http://127.0.0.1:{port}/id?sig=s3cr3t", what="svc")
            assert "s3cr3t" not in str(info.value)
        finally:
            await client.close()
            server.close()

    async def test_a_client_error_quoting_the_url_never_shows_its_query(self) -> None:
        """aiohttp errors that quote the URL (a non-HTTP scheme here) lose its query too."""
        import ssl

        client = HttpClient(ssl.create_default_context(), timeout_seconds=5)
        try:
            with pytest.raises(TransportError, match=r"^svc: ") as info:
                await client.request("GET", "ftp://127.0.0.1:1/id?sig=s3cr3t", what="svc")
            assert "s3cr3t" not in str(info.value)
            assert "ftp://127.0.0.1:1/id" in str(info.value)
        finally:
            await client.close()

    async def test_a_slow_service_times_out(self, server_thread: ServerThread) -> None:
        """Every call has a timeout; the message names the setting."""
        import asyncio
        import ssl

        async def slow(_: web.Request) -> web.Response:
            await asyncio.sleep(1)
            return web.Response()

        app = web.Application()
        app.router.add_get("/", slow)
        port = server_thread.serve(app)
        client = HttpClient(ssl.create_default_context(), timeout_seconds=0.2)
        try:
            with pytest.raises(TransportError, match=r"no answer within 0\.2 s"):
                await client.request("GET", f"http://127.0.0.1:{port}/", what="slow")
        finally:
            await client.close()
        assert urlsplit(f"http://127.0.0.1:{port}/").port == port
