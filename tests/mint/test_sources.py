"""sources.py: every oidc/<provider>/ reference, against stand-ins speaking the real formats."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest

from extauthz.mint.errors import ExchangeError, TokenSourceError, TransportError
from extauthz.mint.sources import OidcRef, OidcTokens, parse_oidc_ref
from extauthz.mint.transport import HttpClient

from .standins import Cloud


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def tokens(http: HttpClient, env: dict[str, str], clock: Clock | None = None) -> OidcTokens:
    return OidcTokens(http, env, clock or Clock())


class TestParse:
    def test_the_audience_is_everything_after_the_provider_slashes_included(self) -> None:
        """oidc/file/home/u/t.txt has provider file and audience home/u/t.txt, as in LiteLLM."""
        assert parse_oidc_ref("oidc/file/home/u/t.txt") == OidcRef("file", "home/u/t.txt")
        assert parse_oidc_ref("oidc/github/api://x/y") == OidcRef("github", "api://x/y")
        assert parse_oidc_ref("oidc/circleci_v2/") == OidcRef("circleci_v2", "")

    def test_unknown_provider_lists_the_known_ones(self) -> None:
        """An unknown provider is refused with the list of supported ones."""
        with pytest.raises(ValueError, match=r"unknown OIDC provider 'aws'.*google, circleci"):
            parse_oidc_ref("oidc/aws/x")


class TestGoogle:
    async def test_token_comes_from_the_metadata_server_with_the_flavor_header(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """GET …/identity?audience=<aud> with Metadata-Flavor: Google; the body is the token."""
        token = await tokens(http, cloud.env()).get(OidcRef("google", "https://example.com/a b"))
        assert token == cloud.gce.issued[-1]
        assert cloud.gce.requests == [{"audience": "https://example.com/a b", "flavor": "Google"}]

    async def test_token_is_cached_for_3540_s(self, cloud: Cloud, http: HttpClient) -> None:
        """A second use within 3540 s does not call the metadata server; a later one does."""
        clock = Clock()
        source = tokens(http, cloud.env(), clock)
        ref = OidcRef("google", "aud-1")
        first = await source.get(ref)
        clock.now += 3000
        assert await source.get(ref) == first
        assert len(cloud.gce.requests) == 1
        clock.now += 541
        assert await source.get(ref) != first
        assert len(cloud.gce.requests) == 2

    async def test_metadata_host_falls_back_to_gce_metadata_root(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """google-auth's older GCE_METADATA_ROOT is honoured too."""
        await tokens(http, {"GCE_METADATA_ROOT": cloud.gce.host}).get(OidcRef("google", "a"))
        assert len(cloud.gce.requests) == 1

    async def test_an_error_status_is_reported_with_the_server_text(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """The metadata server's own complaint is passed on."""
        with pytest.raises(TokenSourceError, match=r"HTTP 400.*non-empty audience"):
            await tokens(http, cloud.env()).get(OidcRef("google", ""))

    async def test_an_unreachable_metadata_server_is_a_transport_error(
        self, http: HttpClient, unused_tcp_port: int
    ) -> None:
        """Nothing listening: the error names the host and port."""
        env = {"GCE_METADATA_HOST": f"127.0.0.1:{unused_tcp_port}"}
        with pytest.raises(TransportError, match=f"cannot connect to 127.0.0.1:{unused_tcp_port}"):
            await tokens(http, env).get(OidcRef("google", "a"))


class TestGithub:
    async def test_token_is_the_json_value_requested_with_the_bearer_and_audience(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…, Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN."""
        token = await tokens(http, cloud.env()).get(OidcRef("github", "sts.amazonaws.com"))
        assert token == cloud.github.issued[-1]
        assert cloud.github.requests == [{"api-version": "2.0", "audience": "sts.amazonaws.com"}]

    async def test_token_is_cached_for_295_s(self, cloud: Cloud, http: HttpClient) -> None:
        """Reused for 295 s, then fetched again."""
        clock = Clock()
        source = tokens(http, cloud.env(), clock)
        ref = OidcRef("github", "a")
        await source.get(ref)
        clock.now += 294
        await source.get(ref)
        clock.now += 2
        await source.get(ref)
        assert len(cloud.github.requests) == 2

    async def test_a_cached_token_is_not_used_within_a_minute_of_its_exp(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """The cache also ends 60 s before the token's own exp."""
        clock = Clock()
        source = tokens(http, cloud.env(), clock)
        ref = OidcRef("github", "a")
        await source.get(ref)
        clock.now += 3600 - 59  # issuer gives 3600-s tokens: past exp - 60
        await source.get(ref)  # fetched again although 295 s have passed anyway
        assert len(cloud.github.requests) == 2

    async def test_a_refused_request_token_is_reported(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """A wrong ACTIONS_ID_TOKEN_REQUEST_TOKEN gives the endpoint's HTTP status."""
        env = cloud.env() | {"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "wrong"}
        with pytest.raises(TokenSourceError, match=r"GitHub Actions OIDC endpoint.*HTTP 401"):
            await tokens(http, env).get(OidcRef("github", "a"))

    async def test_an_untrusted_certificate_says_how_to_trust_it(self, cloud: Cloud) -> None:
        """Without the test CA, TLS fails and the message points at ca_file / SSL_CERT_FILE."""
        plain = HttpClient(ssl.create_default_context(), timeout_seconds=5)
        try:
            with pytest.raises(TransportError, match=r"not trusted.*ca_file or SSL_CERT_FILE"):
                await tokens(plain, cloud.env()).get(OidcRef("github", "a"))
        finally:
            await plain.close()


class TestAzureManagedIdentity:
    """oidc/azure/<aud> without AZURE_FEDERATED_TOKEN_FILE: the managed identity's token for the
    resource <aud>, as LiteLLM gets it through azure-identity."""

    async def test_imds_gives_a_token_for_the_audience_as_resource(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """GET {AZURE_POD_IDENTITY_AUTHORITY_HOST}/metadata/identity/oauth2/token with
        Metadata: true, api-version 2018-02-01, resource=<aud> (/.default dropped)."""
        mi = cloud.managed_identity
        for aud in ("api://123-456-789-9d04", "api://123-456-789-9d04/.default"):
            token = await tokens(http, mi.imds_env()).get(OidcRef("azure", aud))
            assert token == mi.issued[-1]
        assert [r["resource"] for r in mi.requests] == ["api://123-456-789-9d04"] * 2
        assert mi.requests[0] == {
            "endpoint": "imds",
            "path": "/metadata/identity/oauth2/token",
            "api-version": "2018-02-01",
            "resource": "api://123-456-789-9d04",
            "header:metadata": "true",
        }

    async def test_azure_client_id_picks_a_user_assigned_identity(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """AZURE_CLIENT_ID is sent as client_id (azure-identity's ManagedIdentityCredential)."""
        mi = cloud.managed_identity
        mi.system_assigned = False
        mi.user_assigned.add("5c3a1a4e-uami")
        env = mi.imds_env() | {"AZURE_CLIENT_ID": "5c3a1a4e-uami"}
        await tokens(http, env).get(OidcRef("azure", "api://a"))
        assert mi.requests[-1]["client_id"] == "5c3a1a4e-uami"

    async def test_app_service_endpoint_and_header_are_used_when_set(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """IDENTITY_ENDPOINT + IDENTITY_HEADER (App Service, Functions, Container Apps) win over
        IMDS; the header goes as X-IDENTITY-HEADER with api-version 2019-08-01."""
        mi = cloud.managed_identity
        env = mi.imds_env() | mi.app_service_env()
        token = await tokens(http, env).get(OidcRef("azure", "api://a"))
        assert token == mi.issued[-1]
        (call,) = mi.requests
        assert (call["endpoint"], call["api-version"]) == ("app_service", "2019-08-01")
        assert call["header:x-identity-header"] == mi.identity_header

    async def test_the_federated_token_file_wins_when_set(
        self, cloud: Cloud, http: HttpClient, tmp_path: Path
    ) -> None:
        """With AZURE_FEDERATED_TOKEN_FILE (AKS) the endpoint is not asked, as in LiteLLM."""
        path = tmp_path / "t"
        path.write_text("from-file")
        env = cloud.managed_identity.imds_env() | {"AZURE_FEDERATED_TOKEN_FILE": str(path)}
        assert await tokens(http, env).get(OidcRef("azure", "api://a")) == "from-file"
        assert cloud.managed_identity.requests == []

    async def test_tokens_are_reused_as_msal_reuses_them(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """A 24-h token is reused for half its life; a 1-h one until 5 minutes before expiry."""
        mi = cloud.managed_identity
        for lifetime, reuse_until in ((86399, 86399 / 2), (3600, 3300)):
            mi.lifetime = lifetime
            mi.requests.clear()
            clock = Clock()
            source = tokens(http, mi.imds_env(), clock)
            ref = OidcRef("azure", f"api://ttl-{lifetime}")
            first = await source.get(ref)
            clock.now += reuse_until - 2
            assert await source.get(ref) == first
            clock.now += 4
            assert await source.get(ref) != first
            assert len(mi.requests) == 2

    async def test_a_refusal_names_resource_and_identity(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """No such identity: IMDS's own error, the resource and the client id; never the
        App Service header."""
        cloud.managed_identity.system_assigned = False
        env = cloud.managed_identity.app_service_env() | {"AZURE_CLIENT_ID": "nope"}
        with pytest.raises(ExchangeError) as info:
            await tokens(http, env).get(OidcRef("azure", "api://a"))
        message = str(info.value)
        assert "(App Service)" in message and "resource 'api://a' for client nope" in message
        assert "HTTP 400 invalid_request: Identity not found" in message
        assert cloud.managed_identity.identity_header not in message

    async def test_no_endpoint_says_what_to_check(
        self, http: HttpClient, unused_tcp_port: int
    ) -> None:
        """Off Azure the endpoint does not answer: the error names it and the AKS alternative."""
        env = {"AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{unused_tcp_port}"}
        with pytest.raises(TransportError) as info:
            await tokens(http, env).get(OidcRef("azure", "api://a"))
        assert "managed identity endpoint (IMDS)" in str(info.value)
        assert "AZURE_FEDERATED_TOKEN_FILE" in str(info.value)

    @pytest.mark.parametrize("where", ["imds", "app_service"])
    def test_azure_identity_gets_the_same_token_from_the_stand_in(
        self, cloud: Cloud, monkeypatch: pytest.MonkeyPatch, where: str
    ) -> None:
        """The stand-in answers azure-identity's ManagedIdentityCredential (the client LiteLLM
        uses), and that client asks exactly what the minter asks."""
        from azure import identity  # azure-identity, a dev dependency
        mi = cloud.managed_identity
        mi.user_assigned.add("5c3a1a4e-uami")
        env = (mi.imds_env() if where == "imds" else mi.app_service_env()) | {
            "AZURE_CLIENT_ID": "5c3a1a4e-uami"
        }
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        credential = identity.ManagedIdentityCredential(client_id="5c3a1a4e-uami")
        access = credential.get_token("api://123-456-789-9d04")
        assert access.token == mi.issued[-1]
        theirs = mi.requests[-1]

        async def ours() -> str:
            client = HttpClient(ssl.create_default_context(), timeout_seconds=5)
            try:
                return await tokens(client, env).get(OidcRef("azure", "api://123-456-789-9d04"))
            finally:
                await client.close()

        import asyncio

        assert asyncio.run(ours()) == mi.issued[-1]
        assert mi.requests[-1] == theirs


class TestEnvAndFiles:
    @pytest.mark.parametrize(
        ("provider", "variable"),
        [("circleci", "CIRCLE_OIDC_TOKEN"), ("circleci_v2", "CIRCLE_OIDC_TOKEN_V2")],
    )
    async def test_circleci_reads_its_env_var_and_ignores_the_audience(
        self, http: HttpClient, provider: str, variable: str
    ) -> None:
        """CircleCI tokens come from the environment."""
        assert await tokens(http, {variable: "tok\n"}).get(OidcRef(provider, "ignored")) == "tok"

    async def test_env_reads_the_named_variable(self, http: HttpClient) -> None:
        """oidc/env/NAME reads $NAME."""
        assert await tokens(http, {"MY_TOKEN": "t1"}).get(OidcRef("env", "MY_TOKEN")) == "t1"

    async def test_a_missing_env_var_is_named(self, http: HttpClient) -> None:
        """The error names the variable."""
        with pytest.raises(TokenSourceError, match="environment variable MY_TOKEN is not set"):
            await tokens(http, {}).get(OidcRef("env", "MY_TOKEN"))

    async def test_files_are_reread_on_every_use(self, http: HttpClient, tmp_path: Path) -> None:
        """azure, file and env_path re-read the file: the kubelet rotates projected tokens."""
        path = tmp_path / "token"
        env = {"AZURE_FEDERATED_TOKEN_FILE": str(path), "TOKEN_PATH": str(path)}
        source = tokens(http, env)
        for n, ref in enumerate(
            [
                OidcRef("azure", "api://x"),
                OidcRef("file", str(path)),
                OidcRef("env_path", "TOKEN_PATH"),
            ]
        ):
            path.write_text(f"first-{n}\n")
            assert await source.get(ref) == f"first-{n}"
            path.write_text(f"second-{n}")
            assert await source.get(ref) == f"second-{n}"

    async def test_an_unreadable_file_names_the_path_and_the_relative_path_rule(
        self, http: HttpClient
    ) -> None:
        """oidc/file/<path> is relative (LiteLLM's rule); the message says how to go absolute."""
        with pytest.raises(TokenSourceError) as info:
            await tokens(http, {}).get(OidcRef("file", "var/run/missing-token"))
        message = str(info.value)
        assert (
            "cannot read the token file 'var/run/missing-token' (No such file or directory)"
            in message
        )
        assert "oidc/file//" in message

    async def test_a_token_where_a_path_was_meant_is_never_shown(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """oidc/env_path/NAME with the token itself in $NAME: the error names the variable and
        says what to write, and holds no part of the token (it once echoed it as a path)."""
        token = cloud.issuer.issue("https://issuer.example", "aud", "sub")
        env = {"SECRET_TOKEN": token, "AZURE_FEDERATED_TOKEN_FILE": token}
        for ref in (OidcRef("env_path", "SECRET_TOKEN"), OidcRef("azure", "api://a")):
            with pytest.raises(TokenSourceError) as info:
                await tokens(http, env).get(ref)
            message = str(info.value)
            assert "does not look like a path" in message and "oidc/env/" in message
            assert not any(part in message for part in token.split("."))
        env = {"SECRET_TOKEN": "/var/run/missing"}
        with pytest.raises(TokenSourceError, match="'/var/run/missing' \\(from SECRET_TOKEN\\)"):
            await tokens(http, env).get(OidcRef("env_path", "SECRET_TOKEN"))

    async def test_a_huge_or_empty_file_is_refused(self, http: HttpClient, tmp_path: Path) -> None:
        """More than 64 KiB is not a token, and neither is nothing."""
        big, empty = tmp_path / "big", tmp_path / "empty"
        big.write_bytes(b"a" * 70_000)
        empty.write_text("\n")
        with pytest.raises(TokenSourceError, match="larger than"):
            await tokens(http, {}).get(OidcRef("file", str(big)))
        with pytest.raises(TokenSourceError, match="empty token"):
            await tokens(http, {}).get(OidcRef("file", str(empty)))
