"""plan.py: model_list entries become credential specs, and every problem names its key path."""

from __future__ import annotations

from typing import Any

import pytest

from extauthz.errors import ConfigError
from extauthz.mint.plan import (
    AwsStaticSpec,
    AwsWebIdentitySpec,
    AzureEntraSpec,
    MintSettings,
    StaticSecretSpec,
    plan_from_config,
)
from extauthz.mint.sources import OidcRef

ROLE = "arn:aws:iam::123456789012:role/litellm-google-demo"


def bedrock(**params: Any) -> dict[str, Any]:
    base = {
        "model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "aws_region_name": "us-west-2",
        "aws_session_name": "litellm",
        "aws_role_name": ROLE,
        "aws_web_identity_token": "oidc/google/https://example.com",
    }
    base.update(params)
    return {"model_name": "claude-3-haiku-20240307", "litellm_params": base}


def problems(config: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        plan_from_config(config, environ or {})
    return info.value.problems


class TestBedrock:
    def test_the_seeds_google_to_bedrock_example_plans_an_sts_exchange(self) -> None:
        """The seed's Google Cloud Run -> Bedrock entry becomes one STS web-identity spec."""
        plan = plan_from_config({"model_list": [bedrock()]}, {})
        (spec,) = plan.credentials
        assert spec == AwsWebIdentitySpec(
            name="claude-3-haiku-20240307",
            where="model_list[0]",
            token=OidcRef("google", "https://example.com"),
            role_arn=ROLE,
            session_name="litellm",
            sts_endpoint="https://sts.us-west-2.amazonaws.com",
        )
        assert spec.filename == "claude-3-haiku-20240307.aws_credentials"

    def test_sts_endpoint_param_beats_env_which_beats_region(self) -> None:
        """aws_sts_endpoint, then AWS_ENDPOINT_URL_STS, then the regional endpoint."""
        env = {"AWS_ENDPOINT_URL_STS": "https://sts.internal.example"}
        param = bedrock(aws_sts_endpoint="https://sts.eu-central-1.amazonaws.com/")
        assert (
            plan_from_config({"model_list": [param]}, env).credentials[0].sts_endpoint  # type: ignore[union-attr]
            == "https://sts.eu-central-1.amazonaws.com"
        )
        spec = plan_from_config({"model_list": [bedrock()]}, env).credentials[0]
        assert isinstance(spec, AwsWebIdentitySpec)
        assert spec.sts_endpoint == "https://sts.internal.example"

    def test_no_region_uses_aws_region_env_then_the_global_endpoint(self) -> None:
        """Without aws_region_name, AWS_REGION / AWS_DEFAULT_REGION, then sts.amazonaws.com."""
        entry = bedrock()
        del entry["litellm_params"]["aws_region_name"]
        spec = plan_from_config({"model_list": [entry]}, {"AWS_DEFAULT_REGION": "cn-north-1"})
        assert spec.credentials[0].sts_endpoint == "https://sts.cn-north-1.amazonaws.com.cn"  # type: ignore[union-attr]
        spec = plan_from_config({"model_list": [entry]}, {})
        assert spec.credentials[0].sts_endpoint == "https://sts.amazonaws.com"  # type: ignore[union-attr]

    def test_env_fallbacks_fill_missing_params(self) -> None:
        """AWS_WEB_IDENTITY_TOKEN / AWS_ROLE_NAME / AWS_SESSION_NAME apply to bedrock/ models."""
        env = {
            "AWS_WEB_IDENTITY_TOKEN": "oidc/circleci_v2/",
            "AWS_ROLE_NAME": ROLE,
            "AWS_SESSION_NAME": "ci",
            "CIRCLE_OIDC_TOKEN_V2": "x",
        }
        entry = {
            "model_name": "command-r",
            "litellm_params": {"model": "bedrock/cohere.command-r-v1:0"},
        }
        (spec,) = plan_from_config({"model_list": [entry]}, env).credentials
        assert isinstance(spec, AwsWebIdentitySpec)
        assert (spec.token, spec.session_name) == (OidcRef("circleci_v2", ""), "ci")

    def test_missing_role_names_the_key_and_the_env_fallback(self) -> None:
        """A missing aws_role_name is reported under its full key path."""
        entry = bedrock()
        del entry["litellm_params"]["aws_role_name"]
        (problem,) = problems({"model_list": [{"model_name": "x", "litellm_params": {}}, entry]})
        assert problem.startswith("model_list[1].litellm_params.aws_role_name: missing")
        assert "AWS_ROLE_NAME" in problem

    @pytest.mark.parametrize(
        ("key", "value", "expected"),
        [
            ("aws_role_name", "bedrock-role", "is not a role ARN"),
            ("aws_session_name", "has space", "2-64 characters"),
            (
                "aws_web_identity_token",
                "eyJraw.token.value",
                "must be an oidc/<provider>/<audience>",
            ),
            ("aws_web_identity_token", "oidc/gitlab/aud", "unknown OIDC provider 'gitlab'"),
            ("aws_web_identity_token", "oidc/google/", "needs an audience"),
            ("aws_sts_endpoint", "http://sts.example", "must be an https:// URL"),
        ],
    )
    def test_bad_values_are_refused_with_their_path(
        self, key: str, value: str, expected: str
    ) -> None:
        """Each bad value gives one problem naming model_list[0].litellm_params.<key>."""
        found = problems({"model_list": [bedrock(**{key: value})]})
        assert any(
            p.startswith(f"model_list[0].litellm_params.{key}: ") and expected in p for p in found
        ), found

    @pytest.mark.parametrize(
        "arn",
        [
            "arn:aws:iam::12345678:role/bedrock-role",  # seed 003's Azure AD -> Bedrock entry
            "arn:aws:iam::YOUR_THING_HERE:role/litellm-google-demo",  # seed 003, as printed
            "arn:aws-us-gov:iam::123456789012:role/service/team/bedrock",
            "arn:aws-iso-b:iam::123456789012:role/b",
        ],
    )
    def test_any_role_shaped_arn_is_left_to_sts(self, arn: str) -> None:
        """Any partition, any account, role paths: planned; STS is the authority on roles."""
        (spec,) = plan_from_config({"model_list": [bedrock(aws_role_name=arn)]}, {}).credentials
        assert isinstance(spec, AwsWebIdentitySpec) and spec.role_arn == arn

    def test_an_unusual_account_id_is_a_warning_naming_the_key(self) -> None:
        """An account id that is not 12 digits plans, with one warning; a usual one warns not."""
        arn = "arn:aws:iam::12345678:role/bedrock-role"
        plan = plan_from_config({"model_list": [bedrock(aws_role_name=arn)]}, {})
        assert plan.warnings == (
            "model_list[0].litellm_params.aws_role_name: the account id '12345678' in "
            f"{arn} is not 12 digits, as AWS account ids are; STS will say whether the role "
            "exists",
        )
        assert plan_from_config({"model_list": [bedrock()]}, {}).warnings == ()

    def test_static_keys_write_an_aws_credentials_file(self) -> None:
        """aws_access_key_id + aws_secret_access_key (os.environ/ refs) are a static spec."""
        entry = {
            "model_name": "titan",
            "litellm_params": {
                "model": "bedrock/amazon.titan-text-express-v1",
                "aws_access_key_id": "os.environ/AWS_KEY",
                "aws_secret_access_key": "os.environ/AWS_SECRET",
            },
        }
        env = {"AWS_KEY": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG"}
        (spec,) = plan_from_config({"model_list": [entry]}, env).credentials
        assert isinstance(spec, AwsStaticSpec)
        assert spec.access_key_id == "AKIAIOSFODNN7EXAMPLE"
        assert "wJalr" not in repr(spec)


class TestAzure:
    def entry(self, **params: Any) -> dict[str, Any]:
        base = {
            "model": "azure/gpt-4o-2024-05-13",
            "azure_ad_token": "oidc/google/https://example.com",
            "api_version": "2024-06-01",
            "api_base": "https://demo-here.openai.azure.com",
        }
        base.update(params)
        return {"model_name": "gpt-4o-2024-05-13", "litellm_params": base}

    def test_the_seeds_azure_example_uses_env_ids_and_the_default_scope(self) -> None:
        """Client and tenant from AZURE_CLIENT_ID / AZURE_TENANT_ID; cognitiveservices scope."""
        env = {"AZURE_CLIENT_ID": "client-1", "AZURE_TENANT_ID": "tenant-1"}
        (spec,) = plan_from_config({"model_list": [self.entry()]}, env).credentials
        assert spec == AzureEntraSpec(
            name="gpt-4o-2024-05-13",
            where="model_list[0]",
            token=OidcRef("google", "https://example.com"),
            client_id="client-1",
            tenant_id="tenant-1",
            authority_host="https://login.microsoftonline.com",
            scope="https://cognitiveservices.azure.com/.default",
        )
        assert spec.filename == "gpt-4o-2024-05-13.sds.yaml"

    def test_params_beat_env_and_authority_host_accepts_a_bare_host(self) -> None:
        """client_id / tenant_id / azure_scope params win; AZURE_AUTHORITY_HOST may omit https."""
        env = {
            "AZURE_CLIENT_ID": "env-client",
            "AZURE_TENANT_ID": "env-tenant",
            "AZURE_AUTHORITY_HOST": "login.microsoftonline.us/",
            "AZURE_SCOPE": "env-scope",
        }
        entry = self.entry(
            client_id="p-client", tenant_id="contoso.onmicrosoft.com", azure_scope="s"
        )
        (spec,) = plan_from_config({"model_list": [entry]}, env).credentials
        assert isinstance(spec, AzureEntraSpec)
        assert (spec.client_id, spec.tenant_id, spec.scope) == (
            "p-client",
            "contoso.onmicrosoft.com",
            "s",
        )
        assert spec.authority_host == "https://login.microsoftonline.us"

    def test_missing_ids_name_both_keys(self) -> None:
        """Without client and tenant IDs, both are reported."""
        found = problems({"model_list": [self.entry()]})
        assert [p.split(":")[0] for p in found] == [
            "model_list[0].litellm_params.client_id",
            "model_list[0].litellm_params.tenant_id",
        ]

    def test_a_tenant_that_would_change_the_url_path_is_refused(self) -> None:
        """The tenant goes into the token URL, so slashes and the like are refused."""
        found = problems({"model_list": [self.entry(client_id="c", tenant_id="../evil")]})
        assert found == [
            "model_list[0].litellm_params.tenant_id: '../evil' is not a tenant ID or domain"
        ]

    def test_missing_provider_env_var_is_a_config_error(self) -> None:
        """oidc/github needs ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN; both are named."""
        env = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"}
        found = problems({"model_list": [self.entry(azure_ad_token="oidc/github/api://x")]}, env)
        assert found == [
            "model_list[0].litellm_params.azure_ad_token: oidc/github/api://x needs environment "
            "variable ACTIONS_ID_TOKEN_REQUEST_URL, which is not set",
            "model_list[0].litellm_params.azure_ad_token: oidc/github/api://x needs environment "
            "variable ACTIONS_ID_TOKEN_REQUEST_TOKEN, which is not set",
        ]

    def test_oidc_azure_without_federated_token_file_plans_the_managed_identity(self) -> None:
        """oidc/azure/<aud> without AZURE_FEDERATED_TOKEN_FILE is planned (the managed identity
        gives the token at run time); it needs an audience, the resource to ask for."""
        env = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"}
        entry = self.entry(azure_ad_token="oidc/azure/api://a")
        (spec,) = plan_from_config({"model_list": [entry]}, env).credentials
        assert isinstance(spec, AzureEntraSpec) and spec.token == OidcRef("azure", "api://a")
        (found,) = problems({"model_list": [self.entry(azure_ad_token="oidc/azure/")]}, env)
        assert found.startswith(
            "model_list[0].litellm_params.azure_ad_token: oidc/azure/ needs an audience when "
            "AZURE_FEDERATED_TOKEN_FILE is not set"
        )

    @pytest.mark.parametrize(
        ("variables", "hosting"),
        [
            (
                ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT"),
                "Service Fabric",
            ),
            (("MSI_ENDPOINT", "MSI_SECRET"), "Azure Machine Learning"),
            (("IDENTITY_ENDPOINT", "IMDS_ENDPOINT"), "Azure Arc"),
            (("MSI_ENDPOINT",), "Azure Cloud Shell"),
        ],
    )
    def test_managed_identities_not_spoken_are_named_at_start(
        self, variables: tuple[str, ...], hosting: str
    ) -> None:
        """A hosting environment whose managed-identity endpoint is not supported is a start-up
        error naming its variables, not a run-time surprise."""
        env = {"AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t"} | {
            name: "http://127.0.0.1:1/x" for name in variables
        }
        (found,) = problems({"model_list": [self.entry(azure_ad_token="oidc/azure/api://a")]}, env)
        assert found.startswith("model_list[0].litellm_params.azure_ad_token: oidc/azure/api://a:")
        assert f"the {hosting} managed identity is not supported" in found
        assert " and ".join(variables) in found


class TestStaticKeys:
    def test_api_key_from_env_is_a_static_secret_whose_repr_hides_it(self) -> None:
        """api_key: os.environ/NAME becomes the raw key, shown nowhere."""
        entry = {
            "model_name": "claude/sonnet 4",
            "litellm_params": {"api_key": "os.environ/ANTHROPIC_KEY"},
        }
        (spec,) = plan_from_config(
            {"model_list": [entry]}, {"ANTHROPIC_KEY": "sk-ant-123"}
        ).credentials
        assert isinstance(spec, StaticSecretSpec)
        assert spec.name == "claude_sonnet_4"
        assert spec.value.reveal() == "sk-ant-123"
        assert spec.source == "os.environ/ANTHROPIC_KEY"
        assert "sk-ant" not in repr(spec) and "sk-ant" not in str(spec)

    def test_unset_env_var_is_reported_with_its_path(self) -> None:
        """A missing variable is a config error naming the key and the variable."""
        entry = {"model_name": "m", "litellm_params": {"api_key": "os.environ/NOPE"}}
        (found,) = problems({"model_list": [entry]})
        assert found.startswith("model_list[0].litellm_params.api_key: environment variable NOPE")

    def test_static_azure_ad_token_is_a_bearer_secret(self) -> None:
        """A non-OIDC azure_ad_token is sent as Bearer, as LiteLLM does."""
        entry = {"model_name": "m", "litellm_params": {"azure_ad_token": "os.environ/T"}}
        (spec,) = plan_from_config({"model_list": [entry]}, {"T": "tok"}).credentials
        assert isinstance(spec, StaticSecretSpec)
        assert spec.value.reveal() == "Bearer tok"


class TestWholeFile:
    def test_entries_without_credentials_are_skipped_and_others_kept_in_order(self) -> None:
        """Entries with nothing to mint are ignored; the others keep their order."""
        config = {
            "general_settings": {"enable_jwt_auth": True},
            "model_list": [
                {"model_name": "plain", "litellm_params": {"model": "openai/gpt-4o"}},
                {"model_name": "k", "litellm_params": {"api_key": "literal"}},
                bedrock(),
            ],
        }
        specs = plan_from_config(config, {}).credentials
        assert [s.filename for s in specs] == [
            "k.sds.yaml",
            "claude-3-haiku-20240307.aws_credentials",
        ]

    def test_two_entries_writing_one_file_are_refused(self) -> None:
        """model_name 'a/b' and 'a_b' both map to a_b.sds.yaml: the second is refused."""
        config = {
            "model_list": [
                {"model_name": "a/b", "litellm_params": {"api_key": "1"}},
                {"model_name": "a_b", "litellm_params": {"api_key": "2"}},
            ]
        }
        (found,) = problems(config)
        assert found.startswith(
            "model_list[1].model_name: 'a_b' writes a_b.sds.yaml, as model_list[0]"
        )

    def test_model_list_spelt_with_a_space_is_read_with_a_warning(self) -> None:
        """Seed 003's Azure AD -> Bedrock example writes `model list:`; it is read, and the
        warning says LiteLLM reads model_list only. Next to a model_list it is ignored."""
        plan = plan_from_config({"model list": [bedrock()]}, {})
        assert [s.filename for s in plan.credentials] == ["claude-3-haiku-20240307.aws_credentials"]
        assert plan.warnings == (
            "'model list': read as model_list; LiteLLM and extauthz serve read only model_list, "
            "so rename the key",
        )
        other = {"model_name": "k", "litellm_params": {"api_key": "1"}}
        plan = plan_from_config({"model_list": [other], "model list": [bedrock()]}, {})
        assert [s.filename for s in plan.credentials] == ["k.sds.yaml"]
        assert plan.warnings[0].startswith("'model list': ignored")

    def test_nothing_to_mint_is_an_error(self) -> None:
        """A config with no credential says which params would make one."""
        (found,) = problems({"model_list": []})
        assert "no entry has a credential to mint" in found

    def test_settings_are_read_from_extauthz_mint_only(self) -> None:
        """ca_file and timeout_seconds come from extauthz.mint; other extauthz keys are not ours."""
        config = {
            "extauthz": {
                "headers": {"user_id": "x"},
                "mint": {"ca_file": "/ca.pem", "timeout_seconds": 3},
            },
            "model_list": [{"model_name": "k", "litellm_params": {"api_key": "1"}}],
        }
        assert plan_from_config(config, {}).settings == MintSettings("/ca.pem", 3.0)

    def test_unknown_and_bad_settings_are_named(self) -> None:
        """A misspelt setting and an out-of-range timeout are both reported."""
        config = {
            "extauthz": {"mint": {"ca_flie": "/x", "timeout_seconds": 0}},
            "model_list": [{"model_name": "k", "litellm_params": {"api_key": "1"}}],
        }
        found = problems(config)
        assert found[0].startswith("extauthz.mint.ca_flie: unknown setting")
        assert found[1].startswith("extauthz.mint.timeout_seconds: must be a number")

    def test_all_problems_are_reported_at_once(self) -> None:
        """Problems from several entries come back together."""
        config = {
            "model_list": [
                bedrock(aws_role_name="nope"),
                {"model_name": "k", "litellm_params": {"api_key": "os.environ/MISSING"}},
                {"litellm_params": {"api_key": "x"}},
            ]
        }
        found = problems(config)
        assert [p.split(":")[0] for p in found] == [
            "model_list[0].litellm_params.aws_role_name",
            "model_list[1].litellm_params.api_key",
            "model_list[2].model_name",
        ]
