"""Config loading: LiteLLM compatibility, refusals, env references, and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from extauthz.cli import main
from extauthz.config.loader import compile_policy, load_policy_file
from extauthz.config.yamlfile import parse_yaml
from extauthz.errors import ConfigError
from extauthz.model import Role

ENV = {"JWT_PUBLIC_KEY_URL": "https://idp.example/jwks, file:///etc/jwks.json"}


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_policy(parse_yaml(text), ENV if env is None else env)
    return info.value.problems


def test_a_litellm_config_works_as_it_is() -> None:
    """A LiteLLM config.yaml with unrelated keys compiles; unrelated keys become warnings."""
    loaded = compile_policy(
        parse_yaml("""
model_list:
  - model_name: azure-gpt-3.5
    litellm_params:
      model: azure/my-deployment
      api_base: os.environ/AZURE_API_BASE
      api_key: os.environ/AZURE_API_KEY
litellm_settings: {drop_params: true, success_callback: ["langfuse"]}
router_settings: {routing_strategy: simple-shuffle}
general_settings:
  master_key: sk-1234-abcd
  enable_jwt_auth: True
  database_url: os.environ/DATABASE_URL
  alerting: ["slack"]
  litellm_jwtauth:
    admin_jwt_scope: "litellm-proxy-admin"
    admin_allowed_routes: ["/v1/embeddings"]
    public_key_ttl: 600
"""),
        ENV,
    )
    policy = loaded.policy
    assert policy.enable_jwt_auth and policy.master_key == "sk-1234-abcd"
    assert loaded.settings.keys.urls == ("https://idp.example/jwks", "file:///etc/jwks.json")
    assert policy.role_routes[Role.PROXY_ADMIN].matches("/v1/embeddings")
    assert not policy.role_routes[Role.PROXY_ADMIN].matches("/key/generate")
    assert policy.model_names == ("azure-gpt-3.5",)
    text = " ".join(loaded.warnings)
    assert "litellm_settings" in text and "router_settings" in text
    assert "alerting" in text and "database_url" in text


def test_defaults_follow_litellms_code() -> None:
    """No team_id_jwt_field by default (LiteLLM's code has none; only its docstring says
    client_id), the admin scope litellm_proxy_admin, LiteLLM's team routes."""
    loaded = compile_policy(parse_yaml("general_settings: {enable_jwt_auth: true}"), ENV)
    policy = loaded.policy
    assert policy.fields.team_id is None
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/mcp/tools/list"):
        assert policy.role_routes[Role.TEAM].matches(path), path
    assert policy.admin_scope == "litellm_proxy_admin"
    assert loaded.settings.keys.ttl == 600
    assert policy.role_routes[Role.TEAM].matches("/v1/chat/completions")
    assert policy.role_routes[Role.PROXY_ADMIN].matches("/team/block")


def test_team_detection_can_be_turned_off() -> None:
    """team_id_jwt_field: null disables team detection."""
    policy = compile_policy(
        parse_yaml(
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: {team_id_jwt_field: null}}"
        ),
        ENV,
    ).policy
    assert policy.fields.team_id is None


def test_env_references_resolve_where_they_are_read() -> None:
    """os.environ/NAME is read for keys we use, and unset ones in ignored keys don't matter."""
    policy = compile_policy(
        parse_yaml("""
general_settings:
  enable_jwt_auth: true
  master_key: os.environ/MASTER
  database_url: os.environ/NOT_SET_ANYWHERE
extauthz:
  audience: os.environ/AUD
  mint: {token: os.environ/ALSO_NOT_SET}
"""),
        {**ENV, "MASTER": "sk-from-env-123", "AUD": "my-api"},
    ).policy
    assert policy.master_key == "sk-from-env-123"
    assert policy.token_rules.audiences == frozenset({"my-api"})


def test_jwt_audience_and_issuer_come_from_env() -> None:
    """JWT_AUDIENCE / JWT_ISSUER turn on aud and iss checks (comma-separated lists allowed)."""
    policy = compile_policy(
        parse_yaml("general_settings: {enable_jwt_auth: true}"),
        {**ENV, "JWT_AUDIENCE": "a, b", "JWT_ISSUER": "https://idp"},
    ).policy
    assert policy.token_rules.audiences == frozenset({"a", "b"})
    assert policy.token_rules.issuers == frozenset({"https://idp"})


@pytest.mark.parametrize(
    "text,needle",
    [
        ("general_settings: {master_key: os.environ/UNSET_VAR}", "UNSET_VAR is not set"),
        (
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: {team_allowd_routes: []}}",
            "did you mean 'team_allowed_routes'",
        ),
        (
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: "
            "{fallback_to_db_teams: true}}",
            "fallback_to_db_teams: LiteLLM option not implemented",
        ),
        (
            "general_settings: {enable_jwt_auth: true, custom_auth: my.module.fn}",
            "general_settings.custom_auth: not supported",
        ),
        (
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: {public_key_ttl: soon}}",
            "general_settings.litellm_jwtauth.public_key_ttl",
        ),
        ("general_settings: {enable_jwt_auth: 'yes'}", "general_settings.enable_jwt_auth"),
        (
            "general_settings: {enable_jwt_auth: true, role_permissions: [{role: superuser}]}",
            "general_settings.role_permissions[0].role",
        ),
        (
            "general_settings: {enable_jwt_auth: true, role_permissions: "
            "[{role: team, model: [a]}]}",
            "general_settings.role_permissions[0].model",
        ),
        (
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: "
            "{team_allowed_routes: [opeanai_routes]}}",
            "did you mean 'openai_routes'",
        ),
        (
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: "
            "{user_roles_jwt_field: roles}}",
            "must be set together",
        ),
        (
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: "
            "{user_allowed_email_domain: x.com}}",
            "needs user_email_jwt_field",
        ),
        ("general_settings: {master_key: short}", "shorter than 8"),
        ("extauthz: {non_jwt_tokens: allow}", "extauthz.non_jwt_tokens"),
        ("extauthz: {headers: {user_id: 'X Bad'}}", "extauthz.headers.user_id"),
        ("extauthz: {nope: 1}", "extauthz.nope"),
        (
            "general_settings: {enable_jwt_auth: true, role_permissions: "
            "[{role: team}, {role: team}]}",
            "appears twice",
        ),
        ("model_list: [{litellm_params: {}}]", "model_list[0].model_name"),
    ],
)
def test_problems_name_the_key_and_the_fix(text: str, needle: str) -> None:
    """Each broken config gets an error naming the key path."""
    assert any(needle in p for p in problems_of(text)), problems_of(text)


def test_refused_keys_set_to_null_are_fine() -> None:
    """An unimplemented LiteLLM key left at its harmless default is accepted."""
    compile_policy(
        parse_yaml(
            "general_settings: {enable_jwt_auth: true, litellm_jwtauth: "
            "{fallback_to_db_teams: null, enforce_scope_based_access: false}}"
        ),
        ENV,
    )


def test_missing_key_url_is_an_error_when_jwt_is_on() -> None:
    """JWT auth with no JWKS URL would refuse every token: say so at start."""
    assert any(
        "JWT_PUBLIC_KEY_URL" in p
        for p in problems_of("general_settings: {enable_jwt_auth: true}", env={})
    )


def test_every_problem_is_reported_at_once() -> None:
    """Several mistakes give several problems, not just the first."""
    problems = problems_of("""
general_settings:
  enable_jwt_auth: true
  master_key: os.environ/NOPE
  litellm_jwtauth: {team_allowed_routes: [bogus_routes], typo_key: 1}
extauthz: {leeway_seconds: -5}
""")
    assert len(problems) >= 4


@pytest.mark.parametrize(
    "text,needle",
    [
        ("a: 1\na: 2\n", "appears twice"),
        ("general_settings: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_yaml_problems_name_the_line(text: str, needle: str) -> None:
    """Bad YAML, duplicate keys and a non-mapping top level are refused clearly."""
    with pytest.raises(ConfigError) as info:
        parse_yaml(text)
    assert needle in str(info.value)


def test_check_config_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """check-config: exit 0 and a summary, or exit 1 and every problem."""
    monkeypatch.setenv("JWT_PUBLIC_KEY_URL", "file:///dev/null")
    good = tmp_path / "good.yaml"
    good.write_text("general_settings: {enable_jwt_auth: true}\n")
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("general_settings: {enable_jwt_auth: true, litellm_jwtauth: {x: 1, y: 2}}\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "litellm_jwtauth.x" in err and "litellm_jwtauth.y" in err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1


def test_load_policy_file_reads_from_disk(tmp_path: Path) -> None:
    """The file loader names the file in its errors."""
    path = tmp_path / "p.yaml"
    path.write_text("extauthz: {bogus: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_policy_file(str(path), ENV)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    """An empty policy is a mistake, never 'all defaults' (that would turn JWT auth off)."""
    with pytest.raises(ConfigError, match="empty"):
        parse_yaml(text)


def test_serve_refuses_a_malformed_address_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --grpc-address is a one-line usage error (exit 2), not a traceback after binding."""
    policy = tmp_path / "p.yaml"
    policy.write_text("general_settings: {master_key: sk-12345678}\n")
    code = main(
        ["serve", "--config", str(policy), "--grpc-address", "nope", "--state", "memory://"]
    )
    assert code == 2
    assert "--grpc-address 'nope' is not HOST:PORT" in capsys.readouterr().err
