"""The LiteLLM config the integration tests mint from, pointed at the stand-ins."""

from __future__ import annotations

from typing import Any

from .standins import GOOGLE_PROVIDER_AUDIENCE, Cloud

STATIC_KEY = "sk-static-test-key-6f1d2c"
BEDROCK = "anthropic/claude-3-haiku"  # file name anthropic_claude-3-haiku
AZURE = "gpt-4o"
VERTEX = "gemini-1.5-pro"
STATIC = "claude-direct"


def mint_config(cloud: Cloud, ca_file: str | None = None) -> dict[str, Any]:
    """Bedrock via GitHub OIDC + STS, Azure via GCE OIDC + Entra, Vertex via GitHub OIDC +
    Google STS + IAM Credentials (service account impersonation), and a static key."""
    config: dict[str, Any] = {
        "general_settings": {"enable_jwt_auth": True},
        "model_list": [
            {
                "model_name": BEDROCK,
                "litellm_params": {
                    "model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                    "aws_region_name": "us-west-2",
                    "aws_session_name": "litellm-session",
                    "aws_role_name": cloud.sts.role_arn,
                    "aws_web_identity_token": "oidc/github/sts.amazonaws.com",
                    "aws_sts_endpoint": cloud.sts.url,
                },
            },
            {
                "model_name": AZURE,
                "litellm_params": {
                    "model": "azure/gpt-4o-2024-05-13",
                    "azure_ad_token": "oidc/google/api://AzureADTokenExchange",
                    "api_version": "2024-06-01",
                    "api_base": "https://example-resource.openai.azure.com",
                },
            },
            {
                "model_name": VERTEX,
                "litellm_params": {
                    "model": "vertex_ai/gemini-1.5-pro",
                    "vertex_project": "extauthz-demo",
                    "vertex_location": "us-central1",
                    "vertex_credentials": cloud.external_account(
                        {"oidc": f"oidc/github/{GOOGLE_PROVIDER_AUDIENCE}"}
                    ),
                },
            },
            {
                "model_name": STATIC,
                "litellm_params": {
                    "model": "anthropic/claude-3-5-sonnet",
                    "api_key": "os.environ/STATIC_KEY",
                },
            },
        ],
    }
    if ca_file:
        config["extauthz"] = {"mint": {"ca_file": ca_file, "timeout_seconds": 5}}
    return config


def mint_env(cloud: Cloud) -> dict[str, str]:
    return cloud.env() | {"STATIC_KEY": STATIC_KEY}
