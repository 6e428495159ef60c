"""google.py: Vertex AI through workload identity federation (Google STS, IAM Credentials),
against stand-ins speaking Google's wire formats over HTTPS, cross-checked with google-auth."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth import identity_pool
from google.auth.transport.requests import Request

from extauthz.errors import ConfigError
from extauthz.mint.errors import ExchangeError, TokenSourceError
from extauthz.mint.google import (
    ExternalAccount,
    FileSubject,
    UrlSubject,
    exchange_subject_token,
    generate_access_token,
)
from extauthz.mint.minter import vertex_access_token
from extauthz.mint.plan import GoogleVertexSpec, plan_from_config
from extauthz.mint.sources import OidcRef, OidcTokens
from extauthz.mint.transport import HttpClient

from .standins import (
    GOOGLE_PROVIDER,
    GOOGLE_PROVIDER_AUDIENCE,
    VERTEX_SERVICE_ACCOUNT,
    Cloud,
)
from .testca import TestCA

WHERE = "model_list[0].litellm_params.vertex_credentials"


def vertex_entry(credentials: Any, **params: Any) -> dict[str, Any]:
    return {
        "model_name": "gemini-1.5-pro",
        "litellm_params": {
            "model": "vertex_ai/gemini-1.5-pro",
            "vertex_project": "extauthz-demo",
            "vertex_location": "us-central1",
            "vertex_credentials": credentials,
            **params,
        },
    }


def plan_account(cloud: Cloud, credentials: Any, environ: dict[str, str]) -> ExternalAccount:
    (spec,) = plan_from_config({"model_list": [vertex_entry(credentials)]}, environ).credentials
    assert isinstance(spec, GoogleVertexSpec)
    return spec.account


def plan_problems(credentials: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        plan_from_config({"model_list": [vertex_entry(credentials)]}, environ or {})
    return info.value.problems


def tokens(http: HttpClient, env: dict[str, str]) -> OidcTokens:
    return OidcTokens(http, env, time.time)


class TestPlan:
    def test_the_documented_shapes_of_vertex_credentials_plan_one_account(
        self, cloud: Cloud, tmp_path: Path
    ) -> None:
        """A YAML mapping, JSON text, a file path and os.environ/NAME (LiteLLM's forms) give the
        same account; an oidc/ credential source is ours, file and url are google-auth's."""
        doc = cloud.external_account({"oidc": "oidc/github/" + GOOGLE_PROVIDER_AUDIENCE})
        path = tmp_path / "wif.json"
        path.write_text(json.dumps(doc))
        env = cloud.env() | {"VERTEX_CREDENTIALS": str(path)}
        accounts = {
            plan_account(cloud, form, env)
            for form in (doc, json.dumps(doc), str(path), "os.environ/VERTEX_CREDENTIALS")
        }
        assert accounts == {
            ExternalAccount(
                audience=GOOGLE_PROVIDER,
                subject_token_type="urn:ietf:params:oauth:token-type:jwt",
                token_url=f"{cloud.google_sts.url}/v1/token",
                subject=OidcRef("github", GOOGLE_PROVIDER_AUDIENCE),
                impersonation_url=cloud.iam.impersonation_url(),
                service_account=VERTEX_SERVICE_ACCOUNT,
                lifetime_seconds=3600,
            )
        }

    def test_google_auth_credential_sources_and_defaults(self, cloud: Cloud) -> None:
        """file (text or json) and url (headers, json field); token_url defaults to Google's;
        without impersonation the federated token is the credential."""
        doc = cloud.external_account(
            {
                "url": "https://token.example/id?audience=x",
                "headers": {"Authorization": "Bearer os.environ/REQUEST_TOKEN"},
                "format": {"type": "json", "subject_token_field_name": "value"},
            },
            impersonate=False,
        )
        del doc["token_url"]
        account = plan_account(cloud, doc, {})
        assert account.token_url == "https://sts.googleapis.com/v1/token"
        assert account.service_account is None and account.impersonation_url is None
        assert isinstance(account.subject, UrlSubject) and account.subject.field == "value"
        assert "os.environ" in account.subject.headers[0][1].reveal()  # inside a value: literal
        doc = cloud.external_account({"file": "/var/run/token", "format": {"type": "text"}})
        assert plan_account(cloud, doc, {}).subject == FileSubject("/var/run/token")

    def test_url_source_password_and_query_are_not_shown(self, cloud: Cloud) -> None:
        """A credential_source.url may carry a password or a signed query: /status, logs and
        errors name it by scheme, host and path only."""
        doc = cloud.external_account({"url": "https://user:hunter2@token.example/id?sig=s3cr3t"})
        account = plan_account(cloud, doc, {})
        for shown in (str(account.subject), str(account)):
            assert "https://token.example/id" in shown
            assert "hunter2" not in shown and "s3cr3t" not in shown

    @pytest.mark.parametrize(
        ("edit", "key", "expected"),
        [
            ({"type": "service_account"}, "type", "a service account key is a long-lived secret"),
            ({"audience": None}, "audience", "missing; it names the workload identity pool"),
            ({"subject_token_type": "urn:ietf:params:aws:token-type:aws4_request"},
             "subject_token_type", "the OIDC token sources give"),
            ({"token_url": "http://sts.googleapis.com/v1/token"}, "token_url", "https://"),
            ({"service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/x"},
             "service_account_impersonation_url", "/serviceAccounts/<email>:generateAccessToken"),
            ({"service_account_impersonation": {"token_lifetime_seconds": 60}},
             "service_account_impersonation.token_lifetime_seconds", "[600, 43200]"),
            ({"credential_source": {"executable": {"command": "x"}}},
             "credential_source.executable", "not supported"),
            ({"credential_source": {"environment_id": "aws1"}},
             "credential_source.environment_id", "not supported"),
            ({"credential_source": {"file": "/t", "url": "https://x"}},
             "credential_source", "exactly one of oidc, file, url, not file and url"),
            ({"credential_source": {"file": "/t", "format": {"type": "json"}}},
             "credential_source.format.subject_token_field_name", "needed for the json format"),
            ({"credential_source": {"oidc": "oidc/gogle/x"}},
             "credential_source.oidc", "unknown OIDC provider 'gogle'"),
            ({"credential_source": {"oidc": "oidc/github/x"}},
             "credential_source.oidc", "needs environment variable ACTIONS_ID_TOKEN_REQUEST_URL"),
            ({"client_secret": "s3cret"}, "client_secret", "long-lived secret"),
        ],
    )  # fmt: skip
    def test_each_problem_names_the_entry_and_the_key(
        self, cloud: Cloud, edit: dict[str, Any], key: str, expected: str
    ) -> None:
        """Every bad part of the document is a start-up error at its key path."""
        doc = cloud.external_account({"oidc": "oidc/env/T"}) | edit
        doc = {k: v for k, v in doc.items() if v is not None}
        found = plan_problems(doc, {"T": "x"})
        assert any(p.startswith(f"{WHERE}.{key}: ") and expected in p for p in found), found

    def test_a_file_is_named_in_its_problems(self, tmp_path: Path) -> None:
        """A problem inside a credentials file says which file; an unreadable one says why."""
        path = tmp_path / "wif.json"
        path.write_text(json.dumps({"type": "external_account"}))
        found = plan_problems(str(path))
        assert f"{WHERE}.audience: missing" in found[0] and found[0].endswith(f"(in '{path}')")
        (found_missing,) = plan_problems(str(tmp_path / "nope.json"))
        assert found_missing.startswith(f"{WHERE}: cannot read the credentials file")
        (not_json,) = plan_problems('{"type": ')
        assert not_json.startswith(f"{WHERE}: not valid JSON")

    def test_a_value_that_may_be_a_key_is_never_echoed(self) -> None:
        """A base64 document (LiteLLM users paste service account keys that way) is named as
        such; a long value that is no path is not shown."""
        key = base64.b64encode(
            json.dumps({"type": "service_account", "private_key": "k" * 2000}).encode()
        )
        (found,) = plan_problems("os.environ/VERTEX_KEY", {"VERTEX_KEY": key.decode()})
        assert (
            found
            == f"{WHERE}: is base64-encoded JSON; give the JSON itself or the path of its file"
        )
        (found,) = plan_problems("x" * 3000)
        assert "cannot read the credentials file (not shown)" in found and "xxx" not in found

    def test_only_one_bearer_source_per_entry(self, cloud: Cloud) -> None:
        """vertex_credentials next to api_key would write the same NAME.sds.yaml: refused."""
        entry = vertex_entry(cloud.external_account({"oidc": "oidc/env/T"}), api_key="k")
        with pytest.raises(ConfigError) as info:
            plan_from_config({"model_list": [entry]}, {"T": "x"})
        assert info.value.problems == [
            "model_list[0].litellm_params.vertex_credentials: set only one of api_key or "
            "vertex_credentials (each would be written to gemini-1.5-pro.sds.yaml)"
        ]


class TestExchange:
    async def test_sts_then_iam_give_the_service_account_token(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """The subject token goes to Google STS as an RFC 8693 exchange; the federated token
        goes to generateAccessToken as Bearer; the service account's token comes back."""
        account = plan_account(
            cloud, cloud.external_account({"oidc": "oidc/github/" + GOOGLE_PROVIDER_AUDIENCE}),
            cloud.env(),
        )  # fmt: skip
        access = await vertex_access_token(account, http, tokens(http, cloud.env()), time.time)
        assert access.token.reveal() == cloud.iam.issued[-1]
        assert access.expires_at == pytest.approx(time.time() + 3600, abs=5)
        (form,) = cloud.google_sts.requests
        assert form == {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": GOOGLE_PROVIDER,
            "scope": "https://www.googleapis.com/auth/iam",  # as google-auth, to impersonate
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token": cloud.github.issued[-1],
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        }
        (call,) = cloud.iam.requests
        assert call["path"].endswith(
            f"/serviceAccounts/{VERTEX_SERVICE_ACCOUNT}:generateAccessToken"
        )
        assert call["authorization"] == f"Bearer {next(iter(cloud.google_sts.issued))}"
        assert call["body"] == {
            "scope": ["https://www.googleapis.com/auth/cloud-platform"],
            "lifetime": "3600s",
        }

    async def test_without_impersonation_the_federated_token_is_the_credential(
        self, cloud: Cloud, http: HttpClient, tmp_path: Path
    ) -> None:
        """Direct resource access: STS's token and its expires_in; IAM is not called."""
        token = cloud.issuer.issue("https://issuer.example", GOOGLE_PROVIDER_AUDIENCE, "w")
        (tmp_path / "t.json").write_text(json.dumps({"id_token": token}))
        doc = cloud.external_account(
            {
                "file": str(tmp_path / "t.json"),
                "format": {"type": "json", "subject_token_field_name": "id_token"},
            },
            impersonate=False,
        )
        cloud.google_sts.lifetimes.append(1234)
        access = await vertex_access_token(
            plan_account(cloud, doc, {}), http, tokens(http, {}), lambda: 1000.0
        )
        assert access.token.reveal() == next(iter(cloud.google_sts.issued))
        assert access.expires_at == 1000.0 + 1234
        assert cloud.google_sts.requests[0]["subject_token"] == token
        assert cloud.iam.requests == []

    async def test_a_url_source_is_fetched_with_its_headers(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """The document google-github-actions/auth writes: GET the Actions token URL with the
        request token, the subject in the JSON 'value'."""
        doc = cloud.external_account(
            {
                "url": f"{cloud.github.url}&audience={GOOGLE_PROVIDER_AUDIENCE}",
                "headers": {"Authorization": f"Bearer {cloud.github.request_token}"},
                "format": {"type": "json", "subject_token_field_name": "value"},
            }
        )
        access = await vertex_access_token(
            plan_account(cloud, doc, {}), http, tokens(http, {}), time.time
        )
        assert access.token.reveal() == cloud.iam.issued[-1]
        assert cloud.github.requests == [
            {"api-version": "2.0", "audience": GOOGLE_PROVIDER_AUDIENCE}
        ]

    async def test_sts_refusal_names_its_error_and_the_claims_never_the_token(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """invalid_grant (wrong audience): STS's description, the token's aud/iss/sub and what
        the pool provider must accept. The refused token is not reused."""
        env = {"T": cloud.issuer.issue("https://issuer.example", "wrong-aud", "w")}
        account = plan_account(cloud, cloud.external_account({"oidc": "oidc/env/T"}), env)
        with pytest.raises(ExchangeError) as info:
            await vertex_access_token(account, http, tokens(http, env), time.time)
        message = str(info.value)
        assert info.value.code == "invalid_grant"
        assert "HTTP 400 invalid_grant: The audience in ID Token [wrong-aud]" in message
        assert "aud='wrong-aud' iss='https://issuer.example'" in message
        assert "allowed audiences" in message and env["T"] not in message

    async def test_iam_refusal_names_the_service_account_and_the_role(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """PERMISSION_DENIED: IAM's message, and the role the pool principal needs."""
        cloud.iam.service_accounts.clear()
        env = {"T": cloud.issuer.issue("https://issuer.example", GOOGLE_PROVIDER_AUDIENCE, "w")}
        account = plan_account(cloud, cloud.external_account({"oidc": "oidc/env/T"}), env)
        with pytest.raises(ExchangeError) as info:
            await vertex_access_token(account, http, tokens(http, env), time.time)
        message = str(info.value)
        assert f"refused generateAccessToken for {VERTEX_SERVICE_ACCOUNT}" in message
        assert "HTTP 403 PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken'" in (
            message
        )
        assert f"roles/iam.workloadIdentityUser on {VERTEX_SERVICE_ACCOUNT}" in message
        assert not any(t in message for t in cloud.google_sts.issued)

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            ({"access_token": "t"}, "without access_token and expires_in"),
            ({"access_token": "a b", "expires_in": 60}, "containing whitespace"),
        ],
    )
    async def test_malformed_sts_answers_are_refused(
        self, http: HttpClient, server_thread: Any, test_ca: TestCA, body: Any, expected: str
    ) -> None:
        """A 200 without a usable token is an exchange error, never a written credential."""
        from aiohttp import web

        async def answer(_: web.Request) -> web.Response:
            return web.json_response(body)

        app = web.Application()
        app.router.add_post("/v1/token", answer)
        port = server_thread.serve(app)
        account = ExternalAccount(
            GOOGLE_PROVIDER, "urn:ietf:params:oauth:token-type:jwt",
            f"http://127.0.0.1:{port}/v1/token", OidcRef("env", "T"),
        )  # fmt: skip
        with pytest.raises(ExchangeError, match=expected):
            await exchange_subject_token(http, account, "x.y.z", now=0.0)

    async def test_a_bad_iam_expiry_is_refused(self, cloud: Cloud, http: HttpClient) -> None:
        """generateAccessToken needs accessToken and an RFC 3339 expireTime with a zone."""
        account = ExternalAccount(
            GOOGLE_PROVIDER, "urn:ietf:params:oauth:token-type:jwt", "https://unused",
            OidcRef("env", "T"), impersonation_url=cloud.iam.impersonation_url(),
            service_account=VERTEX_SERVICE_ACCOUNT,
        )  # fmt: skip
        with pytest.raises(ExchangeError, match="HTTP 401 UNAUTHENTICATED"):
            await generate_access_token(http, account, "not-a-federated-token")

    async def test_a_subject_url_error_is_a_token_source_error(
        self, cloud: Cloud, http: HttpClient
    ) -> None:
        """The url source answering 401 names the source (no query, no header)."""
        doc = cloud.external_account(
            {"url": cloud.github.url, "headers": {"Authorization": "Bearer wrong"}}
        )
        with pytest.raises(TokenSourceError) as info:
            await vertex_access_token(
                plan_account(cloud, doc, {}), http, tokens(http, {}), time.time
            )
        assert "credential_source.url https://localhost:" in str(info.value)
        assert "HTTP 401" in str(info.value) and "api-version" not in str(info.value)


class TestGoogleAuthCrossCheck:
    """google-auth, the client LiteLLM uses for external_account documents, run against the same
    stand-ins with the same document: it gets a token, and it asks exactly what the minter asks."""

    @staticmethod
    def google_auth_token(doc: dict[str, Any], test_ca: TestCA) -> str:
        session = requests.Session()
        session.verify = str(test_ca.ca_file)
        session.trust_env = False
        credentials = identity_pool.Credentials.from_info(doc).with_scopes(  # type: ignore[no-untyped-call]
            ["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(Request(session))
        return str(credentials.token)

    @pytest.mark.parametrize("impersonate", [True, False])
    async def test_same_document_same_requests_same_kind_of_token(
        self, cloud: Cloud, http: HttpClient, test_ca: TestCA, tmp_path: Path, impersonate: bool
    ) -> None:
        """A file-sourced document (as gcloud writes it for a Kubernetes token): google-auth
        and the minter send the same STS form and the same generateAccessToken body."""
        subject = cloud.issuer.issue("https://k8s.example", GOOGLE_PROVIDER_AUDIENCE, "sa:x")
        token_file = tmp_path / "token"
        token_file.write_text(subject)
        doc = cloud.external_account(
            {"file": str(token_file), "format": {"type": "text"}}, impersonate=impersonate
        )
        theirs = self.google_auth_token(doc, test_ca)
        issued = cloud.iam.issued if impersonate else list(cloud.google_sts.issued)
        assert theirs == issued[-1]
        their_sts, their_iam = cloud.google_sts.requests[-1], list(cloud.iam.requests)
        their_type = cloud.google_sts.headers[-1]["content-type"]

        ours = await vertex_access_token(
            plan_account(cloud, doc, {}), http, tokens(http, {}), time.time
        )
        issued = cloud.iam.issued if impersonate else list(cloud.google_sts.issued)
        assert ours.token.reveal() == issued[-1] != theirs
        assert cloud.google_sts.requests[-1] == their_sts
        assert cloud.google_sts.headers[-1]["content-type"] == their_type
        ours_iam = cloud.iam.requests[len(their_iam) :]
        assert len(ours_iam) == len(their_iam) == (1 if impersonate else 0)
        for mine, google in zip(ours_iam, their_iam, strict=True):
            body = {k: v for k, v in google["body"].items() if v is not None}  # delegates: null
            assert (mine["path"], mine["content_type"], mine["body"]) == (
                google["path"],
                google["content_type"],
                body,
            )
            assert mine["authorization"].startswith("Bearer ya29.d.")

    def test_google_auth_reads_the_url_source_the_minter_reads(
        self, cloud: Cloud, test_ca: TestCA
    ) -> None:
        """The url document (GitHub Actions) works for google-auth against the stand-ins too."""
        doc = cloud.external_account(
            {
                "url": f"{cloud.github.url}&audience={GOOGLE_PROVIDER_AUDIENCE}",
                "headers": {"Authorization": f"Bearer {cloud.github.request_token}"},
                "format": {"type": "json", "subject_token_field_name": "value"},
            }
        )
        assert self.google_auth_token(doc, test_ca) == cloud.iam.issued[-1]
        assert cloud.google_sts.requests[-1]["subject_token"] == cloud.github.issued[-1]
