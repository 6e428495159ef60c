"""extauthz: LiteLLM's JWT/OIDC access policy, decided for Envoy's ext_authz filter."""

__version__ = "0.1.0"
