"""Seed 003 ("[BETA] OpenID Connect (OIDC)", LiteLLM's upstream-OIDC page): every example, verbatim.

Each ``model_list`` example is copied from the page as printed (``model list:`` and the role ARNs
``…::YOUR_THING_HERE:…`` and ``…::12345678:…`` included) and run through ``extauthz mint --once``
as a subprocess. The endpoints are moved only the way the real clients allow: ``GCE_METADATA_HOST``
(google-auth), ``AWS_ENDPOINT_URL_STS`` (the AWS SDKs), ``AZURE_AUTHORITY_HOST`` (azure-identity),
``SSL_CERT_FILE`` for the test CA. The stand-ins hold the trust policies the page describes; each
test then reads the files Envoy reads and checks they hold what the services issued.
"""

from __future__ import annotations

import configparser
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from .envoy import bootstrap_reading, validate
from .proc import Minter
from .standins import Cloud
from .testca import TestCA

GOOGLE_CLOUD_RUN_TO_BEDROCK = """\
model_list:
  - model_name: claude-3-haiku-20240307
    litellm_params:
      model: bedrock/anthropic.claude-3-haiku-20240307-v1:0
      aws_region_name: us-west-2
      aws_session_name: "litellm"
      aws_role_name: "arn:aws:iam::YOUR_THING_HERE:role/litellm-google-demo"
      aws_web_identity_token: "oidc/google/https://example.com"
"""

CIRCLECI_V2_TO_BEDROCK = """\
model_list:
  - model_name: command-r
    litellm_params:
      model: bedrock/cohere.command-r-v1:0
      aws_region_name: us-west-2
      aws_session_name: "my-test-session"
      aws_role_name: "arn:aws:iam::335785316107:role/litellm-github-unit-tests-circleci"
      aws_web_identity_token: "oidc/circleci_v2/"
"""

GOOGLE_CLOUD_RUN_TO_AZURE_OPENAI = """\
model_list:
  - model_name: gpt-4o-2024-05-13
    litellm_params:
      model: azure/gpt-4o-2024-05-13
      azure_ad_token: "oidc/google/https://example.com"
      api_version: "2024-06-01"
      api_base: "https://demo-here.openai.azure.com"
    model_info:
      base_model: azure/gpt-4o-2024-05-13
"""

AZURE_AD_TO_BEDROCK = """\
model list:
  - model_name: aws/claude-3-5-sonnet
    litellm_params:
      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0
      aws_region_name: "eu-central-1"
      aws_role_name: "arn:aws:iam::12345678:role/bedrock-role"
      aws_web_identity_token: "oidc/azure/api://123-456-789-9d04"
      aws_session_name: "litellm-session"
"""

# The page's "unofficial providers", each as printed, in the Google Cloud Run -> Bedrock entry.
FILE_FORM = "oidc/file/home/user/dave/this_is_a_file_with_a_token.txt"
ENV_FORM = "oidc/env/SECRET_TOKEN"
ENV_PATH_FORM = "oidc/env_path/SECRET_TOKEN"

GOOGLE_DEMO_ROLE = "arn:aws:iam::YOUR_THING_HERE:role/litellm-google-demo"
CIRCLECI_ROLE = "arn:aws:iam::335785316107:role/litellm-github-unit-tests-circleci"
BEDROCK_ROLE = "arn:aws:iam::12345678:role/bedrock-role"
CIRCLECI_ORG = "c5a99188-154f-4f69-8da2-b442b1bf78dd"  # the page's trust relationship
# The page's AZURE_CLIENT_ID / AZURE_TENANT_ID exports, which are also the Entra stand-in's.
PAGE_AZURE_ENV = {
    "AZURE_CLIENT_ID": "91a43c21-cf21-4f34-9085-331015ea4f91",
    "AZURE_TENANT_ID": "f3b1cf79-eba8-40c3-8120-cb26aca169c2",
}


def with_token_ref(ref: str, model_name: str = "claude-3-haiku-20240307") -> str:
    """The Google Cloud Run -> Bedrock example with another ``aws_web_identity_token``."""
    text = GOOGLE_CLOUD_RUN_TO_BEDROCK.replace('"oidc/google/https://example.com"', f'"{ref}"')
    return text.replace("claude-3-haiku-20240307\n", f"{model_name}\n", 1)


def base_env(cloud: Cloud, test_ca: TestCA) -> dict[str, str]:
    """The stand-ins' addresses, through the variables the real clients read."""
    return {
        "SSL_CERT_FILE": str(test_ca.ca_file),
        "GCE_METADATA_HOST": cloud.gce.host,
        "AWS_ENDPOINT_URL_STS": cloud.sts.url,
        "AZURE_AUTHORITY_HOST": cloud.entra.url,
    }


def run_once(
    text: str, env: dict[str, str], tmp_path: Path, cwd: Path | None = None
) -> tuple[Minter, Path]:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    minter = Minter(
        ["--config", str(config), "--out", str(out), "--once"], env, cwd=cwd or tmp_path
    )
    assert minter.wait() == 0, "\n".join(minter.lines)
    return minter, out


def written(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def aws_file(out: Path, name: str, cloud: Cloud) -> dict[str, str]:
    """The INI Envoy's aws_request_signing reads, checked against what STS issued."""
    path = out / name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ini = configparser.ConfigParser()
    ini.read(path)
    profile = dict(ini["default"])
    issued = cloud.sts.issued[profile["aws_access_key_id"]]
    assert profile["aws_secret_access_key"] == issued["SecretAccessKey"]
    assert profile["aws_session_token"] == issued["SessionToken"]
    return profile


def sts_call(cloud: Cloud, role: str) -> dict[str, str]:
    (call,) = [r for r in cloud.sts.requests if r["RoleArn"] == role]
    return call


def sds_secret(out: Path, name: str) -> str:
    """The one generic secret in ``NAME.sds.yaml``, as Envoy's credential_injector reads it."""
    path = out / f"{name}.sds.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (resource,) = yaml.safe_load(path.read_text())["resources"]
    assert resource["name"] == name
    return str(resource["generic_secret"]["secret"]["inline_string"])


def warnings(minter: Minter) -> list[str]:
    return [r["msg"] for r in minter.records() if r.get("level") == "warning"]


def no_secret_logged(minter: Minter, cloud: Cloud, extra: list[str] | None = None) -> None:
    secrets = [*cloud.secrets(), *(extra or [])]
    assert not [s for s in secrets if any(s in line for line in minter.lines)]


def test_google_cloud_run_to_bedrock(cloud: Cloud, test_ca: TestCA, tmp_path: Path) -> None:
    """The GCE identity token for https://example.com buys STS credentials for the role as
    printed (account YOUR_THING_HERE, a warning, and STS decides)."""
    cloud.sts.trusts[GOOGLE_DEMO_ROLE] = "https://example.com"
    minter, out = run_once(GOOGLE_CLOUD_RUN_TO_BEDROCK, base_env(cloud, test_ca), tmp_path)
    assert written(out) == ["claude-3-haiku-20240307.aws_credentials"]
    aws_file(out, "claude-3-haiku-20240307.aws_credentials", cloud)
    call = sts_call(cloud, GOOGLE_DEMO_ROLE)
    assert call["RoleSessionName"] == "litellm" and call["DurationSeconds"] == "3600"
    assert call["WebIdentityToken"] == cloud.gce.issued[-1]
    assert cloud.gce.requests == [{"audience": "https://example.com", "flavor": "Google"}]
    assert any("'YOUR_THING_HERE'" in w and "not 12 digits" in w for w in warnings(minter))
    no_secret_logged(minter, cloud)


def test_circleci_v2_to_bedrock(cloud: Cloud, test_ca: TestCA, tmp_path: Path) -> None:
    """$CIRCLE_OIDC_TOKEN_V2 (audience: the org id, as in the page's trust relationship)."""
    cloud.sts.trusts[CIRCLECI_ROLE] = CIRCLECI_ORG
    token = cloud.issuer.issue(
        f"https://oidc.circleci.com/org/{CIRCLECI_ORG}",
        CIRCLECI_ORG,
        f"org/{CIRCLECI_ORG}/project/p/user/u/vcs-origin/github.com/BerriAI/litellm/"
        "vcs-ref/refs/heads/main",
    )
    env = base_env(cloud, test_ca) | {"CIRCLE_OIDC_TOKEN_V2": token}
    minter, out = run_once(CIRCLECI_V2_TO_BEDROCK, env, tmp_path)
    assert written(out) == ["command-r.aws_credentials"]
    aws_file(out, "command-r.aws_credentials", cloud)
    call = sts_call(cloud, CIRCLECI_ROLE)
    assert (call["RoleSessionName"], call["WebIdentityToken"]) == ("my-test-session", token)
    assert warnings(minter) == []
    no_secret_logged(minter, cloud)


def test_google_cloud_run_to_azure_openai(cloud: Cloud, test_ca: TestCA, tmp_path: Path) -> None:
    """The GCE token is the client assertion at Entra, with the page's AZURE_CLIENT_ID and
    AZURE_TENANT_ID; the access token lands as Bearer in the SDS file."""
    cloud.entra.audience = "https://example.com"  # the app's federated credential
    env = base_env(cloud, test_ca) | PAGE_AZURE_ENV
    minter, out = run_once(GOOGLE_CLOUD_RUN_TO_AZURE_OPENAI, env, tmp_path)
    assert written(out) == ["gpt-4o-2024-05-13.sds.yaml"]
    assert sds_secret(out, "gpt-4o-2024-05-13") == f"Bearer {cloud.entra.issued[-1]}"
    (call,) = cloud.entra.requests
    assert call["client_id"] == PAGE_AZURE_ENV["AZURE_CLIENT_ID"]
    assert call["client_assertion"] == cloud.gce.issued[-1]
    no_secret_logged(minter, cloud)


def test_azure_ad_to_bedrock_with_aks_workload_identity(
    cloud: Cloud, test_ca: TestCA, tmp_path: Path
) -> None:
    """`model list:` as printed, account 12345678; the token is AKS's projected file (as in
    LiteLLM, AZURE_FEDERATED_TOKEN_FILE wins and the reference's audience is not used)."""
    cloud.sts.trusts[BEDROCK_ROLE] = "api://AzureADTokenExchange"
    token = cloud.issuer.issue(
        "https://oidc.prod-aks.azure.com/0e5c4b6a-4b9e-4a0e-a6b2-6f2d9a1c7e11/",
        "api://AzureADTokenExchange",
        "system:serviceaccount:llm:litellm",
    )
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(token)
    env = base_env(cloud, test_ca) | {"AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    minter, out = run_once(AZURE_AD_TO_BEDROCK, env, tmp_path)
    assert written(out) == ["aws_claude-3-5-sonnet.aws_credentials"]
    aws_file(out, "aws_claude-3-5-sonnet.aws_credentials", cloud)
    call = sts_call(cloud, BEDROCK_ROLE)
    assert (call["RoleSessionName"], call["WebIdentityToken"]) == ("litellm-session", token)
    found = warnings(minter)
    assert any("'model list': read as model_list" in w for w in found), found
    assert any("'12345678'" in w and "not 12 digits" in w for w in found), found
    no_secret_logged(minter, cloud)


@pytest.mark.parametrize("where", ["imds", "app_service"])
def test_azure_ad_to_bedrock_with_a_managed_identity(
    cloud: Cloud, test_ca: TestCA, tmp_path: Path, where: str
) -> None:
    """No AZURE_FEDERATED_TOKEN_FILE: the managed identity's token for the resource
    api://123-456-789-9d04 (the reference's audience) is the web identity STS gets, as LiteLLM
    gets it from azure-identity. IMDS (a VM, a node identity) or App Service's endpoint."""
    cloud.sts.trusts[BEDROCK_ROLE] = "api://123-456-789-9d04"
    mi = cloud.managed_identity
    env = base_env(cloud, test_ca) | (mi.imds_env() if where == "imds" else mi.app_service_env())
    minter, out = run_once(AZURE_AD_TO_BEDROCK, env, tmp_path)
    assert written(out) == ["aws_claude-3-5-sonnet.aws_credentials"]
    aws_file(out, "aws_claude-3-5-sonnet.aws_credentials", cloud)
    assert sts_call(cloud, BEDROCK_ROLE)["WebIdentityToken"] == mi.issued[-1]
    (call,) = mi.requests
    assert (call["endpoint"], call["resource"]) == (where, "api://123-456-789-9d04")
    no_secret_logged(minter, cloud)


@pytest.mark.parametrize("form", [FILE_FORM, ENV_FORM, ENV_PATH_FORM])
def test_unofficial_token_forms(cloud: Cloud, test_ca: TestCA, tmp_path: Path, form: str) -> None:
    """oidc/file/<path relative to the working directory>, oidc/env/NAME, oidc/env_path/NAME."""
    cloud.sts.trusts[GOOGLE_DEMO_ROLE] = "sts.amazonaws.com"
    token = cloud.issuer.issue("https://issuer.example", "sts.amazonaws.com", "workload")
    workdir = tmp_path / "work"
    token_path = workdir / "home/user/dave/this_is_a_file_with_a_token.txt"
    token_path.parent.mkdir(parents=True)
    token_path.write_text(token + "\n")
    env = base_env(cloud, test_ca)
    if form == ENV_FORM:
        env["SECRET_TOKEN"] = token
    elif form == ENV_PATH_FORM:
        env["SECRET_TOKEN"] = str(token_path)
    minter, out = run_once(with_token_ref(form), env, tmp_path, cwd=workdir)
    aws_file(out, "claude-3-haiku-20240307.aws_credentials", cloud)
    assert sts_call(cloud, GOOGLE_DEMO_ROLE)["WebIdentityToken"] == token
    no_secret_logged(minter, cloud)


def test_every_seed_entry_in_one_file_writes_every_file_envoy_reads(
    cloud: Cloud, test_ca: TestCA, tmp_path: Path
) -> None:
    """All the page's entries in one model_list: one --once run writes seven files, and a real
    Envoy loads every one of them (`envoy --mode validate`)."""
    cloud.sts.trusts.update(
        {
            GOOGLE_DEMO_ROLE: "https://example.com",
            CIRCLECI_ROLE: CIRCLECI_ORG,
            BEDROCK_ROLE: "api://AzureADTokenExchange",
            "arn:aws:iam::YOUR_THING_HERE:role/forms": "sts.amazonaws.com",
        }
    )
    cloud.entra.audience = "https://example.com"
    forms_token = cloud.issuer.issue("https://issuer.example", "sts.amazonaws.com", "workload")
    aks_token = cloud.issuer.issue(
        "https://oidc.prod-aks.azure.com/x/", "api://AzureADTokenExchange", "system:sa"
    )
    workdir = tmp_path / "work"
    token_path = workdir / "home/user/dave/this_is_a_file_with_a_token.txt"
    token_path.parent.mkdir(parents=True)
    token_path.write_text(forms_token)
    aks_file = tmp_path / "aks-token"
    aks_file.write_text(aks_token)
    entries: list[Any] = []
    for text in (
        GOOGLE_CLOUD_RUN_TO_BEDROCK,
        CIRCLECI_V2_TO_BEDROCK,
        GOOGLE_CLOUD_RUN_TO_AZURE_OPENAI,
        AZURE_AD_TO_BEDROCK.replace("model list:", "model_list:"),
        *(
            with_token_ref(form, name).replace("litellm-google-demo", "forms")
            for form, name in (
                (FILE_FORM, "claude-file"),
                (ENV_FORM, "claude-env"),
                # both forms read SECRET_TOKEN on the page; one file needs two variables
                (ENV_PATH_FORM.replace("SECRET_TOKEN", "SECRET_TOKEN_PATH"), "claude-env-path"),
            )
        ),
    ):
        entries += yaml.safe_load(text)["model_list"]
    circleci = cloud.issuer.issue("https://oidc.circleci.com/org/x", CIRCLECI_ORG, "org/x")
    env = (
        base_env(cloud, test_ca)
        | PAGE_AZURE_ENV
        | {
            "CIRCLE_OIDC_TOKEN_V2": circleci,
            "AZURE_FEDERATED_TOKEN_FILE": str(aks_file),
            "SECRET_TOKEN": forms_token,
            "SECRET_TOKEN_PATH": str(token_path),
        }
    )
    minter, out = run_once(yaml.safe_dump({"model_list": entries}), env, tmp_path, cwd=workdir)
    assert written(out) == [
        "aws_claude-3-5-sonnet.aws_credentials",
        "claude-3-haiku-20240307.aws_credentials",
        "claude-env-path.aws_credentials",
        "claude-env.aws_credentials",
        "claude-file.aws_credentials",
        "command-r.aws_credentials",
        "gpt-4o-2024-05-13.sds.yaml",
    ]
    for name in written(out):
        if name.endswith(".aws_credentials"):
            aws_file(out, name, cloud)
    assert sds_secret(out, "gpt-4o-2024-05-13") == f"Bearer {cloud.entra.issued[-1]}"
    bootstrap = tmp_path / "envoy.yaml"
    bootstrap.write_text(yaml.safe_dump(bootstrap_reading(out)))
    result = validate(bootstrap)
    assert result.returncode == 0, result.stdout + result.stderr
    no_secret_logged(minter, cloud, [circleci, forms_token, aks_token])
