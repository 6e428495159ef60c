"""The differential test: LiteLLM's own JWT auth (``litellm_oracle``) against our decision.

The same configs (``general_settings``), the same signed tokens and the same requests go through
LiteLLM 1.108.7's ``auth_builder`` and route check, and through our ``Authorizer`` (token checks
included). Allow/deny must agree, except where one of the listed ``DIFFERENCES`` explains the
disagreement; each difference is in the README's "Where we deliberately differ from LiteLLM".
A disagreement no difference explains fails the test, naming the case.

Run with ``-s`` to see the agreement rate (``pytest -s tests/unit/test_differential.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jose import jwt

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at LiteLLM's import
pytest.importorskip("litellm.proxy.auth.handle_jwt")

from extauthz.authorizer import Authorizer, StateView
from extauthz.config.loader import compile_policy
from extauthz.devtokens import private_pem, public_jwk, sign_token
from extauthz.identity.introspection import IntrospectionClient, Introspector
from extauthz.identity.jwks import JwksSource
from extauthz.identity.verifier import TokenVerifier
from extauthz.model import (
    MASTER_KEY,
    OAUTH2,
    Allow,
    Decision,
    Deny,
    Reason,
    RequestView,
    Role,
)
from extauthz.state.protocol import StateSnapshot, TeamEntry
from tests.unit.keys import jwks, rsa_jwk, rsa_key
from tests.unit.litellm_oracle import Outcome, litellm_decides
from tests.unit.oauth2_standin import introspection_standin, opaque_token

README = Path(__file__).resolve().parents[2] / "README.md"

# ---------------------------------------------------------------------------------------------
# Configs: general_settings sections, as a LiteLLM config.yaml holds them.
SEED000 = {
    "user_id_jwt_field": "sub",
    "user_roles_jwt_field": "roles",
    "user_allowed_roles": ["basic_user"],
    "enforce_rbac": True,
}
IDP_A, IDP_B = "https://idp-a.example", "https://idp-b.example"
PARTNER = "https://partner.example"  # its JWTs go to OAuth2 introspection (routing_overrides)
TEAM_OR_USER = {"user_id_jwt_field": "sub", "team_id_jwt_field": "client_id", "enforce_rbac": True}
ISSUER_A: dict[str, Any] = {
    "issuer": IDP_A,
    "audience": "api-a",
    "jwks_url": f"{IDP_A}/jwks",
    "team_id_jwt_field": "tid",
}
ISSUER_B: dict[str, Any] = {
    "issuer": IDP_B,
    "audience": ["api-b"],
    "jwks_url": f"{IDP_B}/jwks",
    "user_id_jwt_field": "oid",
    "user_email_jwt_field": "upn",
}
ISSUERS = {**TEAM_OR_USER, "issuers": [ISSUER_A, ISSUER_B]}
VALIDATORS = "tests.unit.litellm_validators"
ENTRA = {
    "roles_jwt_field": "roles",
    "role_mappings": [
        {"role": "litellm.api.consumer", "internal_role": "team"},
        {"role": "litellm.api.user", "internal_role": "internal_user"},
        {"role": "litellm.api.admin", "internal_role": "proxy_admin"},
    ],
    "object_id_jwt_field": "oid",
    "enforce_rbac": True,
}
OKTA_SCOPES = [
    {"scope": "litellm.models.gpt", "models": ["gpt-4o"]},
    {"scope": "litellm.models.claude", "models": ["anthropic-claude", "claude-3-5-sonnet"]},
    {"scope": "openid"},
]
CONFIGS: dict[str, dict[str, Any]] = {
    # seed 000: roles make an internal_user, one model allowed
    "seed000": {
        "litellm_jwtauth": SEED000,
        "role_permissions": [{"role": "internal_user", "models": ["anthropic-claude"]}],
    },
    "seed000-no-rbac": {
        "litellm_jwtauth": {k: v for k, v in SEED000.items() if k != "enforce_rbac"},
        "role_permissions": [{"role": "internal_user", "models": ["anthropic-claude"]}],
    },
    # seed 000, Keycloak: roles under resource_access.<client>.roles
    "keycloak": {
        "litellm_jwtauth": {
            **SEED000,
            "user_roles_jwt_field": "resource_access.litellm-test-client-id.roles",
        },
    },
    # seed 002: admin scope, team / user / org / end user, team models
    "seed002": {
        "litellm_jwtauth": {
            "admin_jwt_scope": "litellm-proxy-admin",
            "team_id_jwt_field": "client_id",
            "user_id_jwt_field": "sub",
            "org_id_jwt_field": "org_id",
            "end_user_id_jwt_field": "customer_id",
            "user_email_jwt_field": "email",
            "enforce_rbac": True,
        },
        "role_permissions": [{"role": "team", "models": ["gpt-4o", "claude-*"]}],
    },
    "team-default": {
        "litellm_jwtauth": {
            "team_id_jwt_field": "client_id",
            "team_id_default": "default-team",
            "enforce_rbac": True,
        },
    },
    "team-routes": {
        "litellm_jwtauth": {
            "team_id_jwt_field": "client_id",
            "team_allowed_routes": ["openai_routes"],
            "enforce_rbac": True,
        },
        "role_permissions": [{"role": "team", "routes": ["/v1/chat/completions"]}],
    },
    "minimal": {"litellm_jwtauth": {}},
    "users": {"litellm_jwtauth": {"user_id_jwt_field": "sub", "enforce_rbac": True}},
    "email": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "user_email_jwt_field": "email",
            "user_allowed_email_domain": "example.com",
            "enforce_rbac": True,
        },
    },
    "admin-llm": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "admin_allowed_routes": ["openai_routes", "management_routes"],
            "enforce_rbac": True,
        },
        "role_permissions": [{"role": "internal_user", "models": ["gpt-*"]}],
    },
    # From LiteLLM's own JWT tests: the user id falls back to the email claim
    # (JWTAuthManager.get_user_info), and role_permissions per role under enforce_rbac.
    "email-as-user-id": {
        "litellm_jwtauth": {"user_email_jwt_field": "email", "enforce_rbac": True},
    },
    "rbac-models": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "team_id_jwt_field": "client_id",
            "enforce_rbac": True,
        },
        "role_permissions": [
            {"role": "internal_user", "models": ["gpt-4o"]},
            {"role": "team", "models": ["anthropic-claude"], "routes": ["openai_routes"]},
        ],
    },
    # general_settings checked before the token (issue 16): client address, exact route list,
    # public routes, admin-only routes, the key's header
    "gate-ips": {
        "litellm_jwtauth": {"user_id_jwt_field": "sub", "team_id_jwt_field": "client_id"},
        "allowed_ips": ["127.0.0.1", "::1"],
    },
    "gate-ips-xff": {
        "litellm_jwtauth": {"user_id_jwt_field": "sub"},
        "allowed_ips": ["203.0.113.7"],
        "use_x_forwarded_for": True,
    },
    "gate-routes": {
        "litellm_jwtauth": {"user_id_jwt_field": "sub", "team_id_jwt_field": "client_id"},
        "allowed_routes": ["/v1/chat/completions", "/team/info", "/v1/models"],
    },
    "gate-public": {
        "litellm_jwtauth": {"user_id_jwt_field": "sub", "enforce_rbac": True},
        "public_routes": ["/team/info", "/global/*", "LiteLLMRoutes.public_routes"],
    },
    "gate-admin-only": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "team_id_jwt_field": "client_id",
            "admin_allowed_routes": ["openai_routes", "management_routes"],
        },
        "admin_only_routes": ["/v1/embeddings", "/team/info"],
    },
    "gate-key-header": {
        "litellm_jwtauth": {"user_id_jwt_field": "sub", "team_id_jwt_field": "client_id"},
        "litellm_key_header_name": "X-My-Key",
    },
    # Teams (issue 17), with the team registry below: LiteLLM's database holds the same teams.
    "teams-groups": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "team_ids_jwt_field": "groups",
            "enforce_rbac": True,
        },
    },
    "teams-groups-enforced": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "team_ids_jwt_field": "groups",
            "enforce_team_based_model_access": True,
            "enforce_rbac": True,
        },
        "role_permissions": [
            {"role": "internal_user", "models": ["gpt-4o", "anthropic-claude"]}
        ],
    },
    "teams-alias": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "team_id_jwt_field": "client_id",
            "team_alias_jwt_field": "team_name",
            "enforce_rbac": True,
        },
    },
    "teams-claim-rbac": {
        "litellm_jwtauth": {
            "team_id_jwt_field": "client_id",
            "user_id_jwt_field": "sub",
            "enforce_rbac": True,
        },
        "role_permissions": [{"role": "team", "models": ["gpt-4o", "anthropic-claude"]}],
    },
    "teams-upsert": {
        "litellm_jwtauth": {
            "team_id_jwt_field": "client_id",
            "team_id_upsert": True,
            "enforce_rbac": True,
        },
    },
    # Several identity providers: each its own audience and claim fields (issue 16)
    "issuers": {"litellm_jwtauth": ISSUERS},
    # an issuer's own team_ids_jwt_field, the global one as its fallback (the team registry)
    "teams-issuers": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "team_ids_jwt_field": "groups",
            "enforce_rbac": True,
            "issuers": [
                {**ISSUER_A, "team_id_jwt_field": None, "team_ids_jwt_field": "wids"},
                ISSUER_B,
            ],
        },
    },
    "custom-validate": {
        "litellm_jwtauth": {**TEAM_OR_USER, "custom_validate": f"{VALIDATORS}.not_mallory"},
    },
    "issuers-validate": {
        "litellm_jwtauth": {**ISSUERS, "custom_validate": f"{VALIDATORS}.not_blocked_team"},
    },
    "validate-truthy": {
        "litellm_jwtauth": {**TEAM_OR_USER, "custom_validate": f"{VALIDATORS}.truthy_subject"},
    },
    # routing_overrides (issue 16): matching JWTs are introspected (a stand-in endpoint that
    # answers each token's "introspection" claim; LiteLLM's own check_oauth2_token asks it)
    "oauth2-override": {
        "litellm_jwtauth": {"user_id_jwt_field": "sub", "routing_overrides": [{"iss": PARTNER}]},
    },
    "oauth2-override-scope": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "team_id_jwt_field": "client_id",
            "routing_overrides": [
                {"iss": ["https://nobody.example", "https://*.example"], "scope": "llm.*"}
            ],
        },
        "role_permissions": [{"role": "team", "models": ["gpt-4o"]}],
    },
    # Entra ID app roles (issue 16): the app role makes the role, the object id (oid) the id.
    "entra": {
        "litellm_jwtauth": ENTRA,
        "role_permissions": [{"role": "team", "models": ["gpt-4o", "anthropic-claude"]}],
    },
    "entra-no-rbac": {"litellm_jwtauth": {k: v for k, v in ENTRA.items() if k != "enforce_rbac"}},
    "entra-user-id": {
        "litellm_jwtauth": {**ENTRA, "user_id_jwt_field": "sub"},
        "role_permissions": [
            {"role": "internal_user", "models": ["gpt-4o"]},
            {"role": "proxy_admin", "models": ["anthropic-claude"], "routes": ["openai_routes"]},
        ],
    },
    "entra-team-id": {"litellm_jwtauth": {**ENTRA, "team_id_jwt_field": "azp"}},
    # general_settings.enforce_rbac (not litellm_jwtauth's): LiteLLM's validate_object_id
    "entra-general-rbac": {
        "litellm_jwtauth": {k: v for k, v in ENTRA.items() if k != "enforce_rbac"},
        "enforce_rbac": True,
    },
    # Okta groups (issue 16): jwt_litellm_role_map globs, synced into LiteLLM's user row
    "okta-groups": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "roles_jwt_field": "groups",
            "jwt_litellm_role_map": [
                {"jwt_role": "litellm-admins-*", "litellm_role": "proxy_admin"},
                {"jwt_role": "litellm-*", "litellm_role": "internal_user"},
            ],
            "sync_user_role_and_teams": True,
            "enforce_rbac": True,
        },
        "role_permissions": [{"role": "internal_user", "models": ["gpt-4o"]}],
    },
    "okta-groups-no-rbac": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "user_email_jwt_field": "email",
            "roles_jwt_field": "groups",
            "jwt_litellm_role_map": [
                {"jwt_role": "litellm-admins-*", "litellm_role": "proxy_admin"},
            ],
            "sync_user_role_and_teams": True,
        },
    },
    "okta-groups-teams": {
        "litellm_jwtauth": {
            "team_id_jwt_field": "client_id",
            "user_id_jwt_field": "sub",
            "roles_jwt_field": "groups",
            "jwt_litellm_role_map": [
                {"jwt_role": "litellm-admins-*", "litellm_role": "proxy_admin"},
            ],
            "sync_user_role_and_teams": True,
            "enforce_rbac": True,
        },
        "role_permissions": [{"role": "team", "models": ["anthropic-claude"]}],
    },
    "okta-group-mappings": {
        "litellm_jwtauth": {
            "roles_jwt_field": "groups",
            "role_mappings": [
                {"role": "LiteLLM Teams", "internal_role": "team"},
                {"role": "LiteLLM Users", "internal_role": "internal_user"},
            ],
            "object_id_jwt_field": "uid",
            "enforce_rbac": True,
        },
    },
    # Okta scopes (issue 16): scope_mappings with enforce_scope_based_access
    "okta-scopes": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "scope_mappings": OKTA_SCOPES,
            "enforce_scope_based_access": True,
            "enforce_rbac": True,
        },
    },
    "okta-scopes-admin": {
        "litellm_jwtauth": {
            "admin_jwt_scope": "litellm-proxy-admin",
            "team_id_jwt_field": "cid",
            "scope_mappings": OKTA_SCOPES,
            "enforce_scope_based_access": True,
        },
    },
    "okta-scopes-routes": {
        "litellm_jwtauth": {
            "user_id_jwt_field": "sub",
            "scope_mappings": [
                {"scope": "litellm.models.gpt", "models": ["gpt-4o"], "routes": ["openai_routes"]},
                {"scope": "litellm.models.claude", "routes": ["/v1/messages"]},
            ],
            "enforce_scope_based_access": True,
        },
    },
    # general_settings.enforce_user_param (issue 16): every caller's POST to an LLM API route
    "user-param": {
        "litellm_jwtauth": {**TEAM_OR_USER, "admin_allowed_routes": ["openai_routes"]},
        "enforce_user_param": True,
    },
    "user-param-users": {
        "litellm_jwtauth": {"user_id_jwt_field": "sub", "enforce_rbac": True},
        "enforce_user_param": True,
    },
    # Auth0: a namespaced claim, whose name holds dots
    "auth0": {
        "litellm_jwtauth": {
            "user_roles_jwt_field": "https://example.com/roles",
            "user_allowed_roles": ["basic_user"],
            "enforce_rbac": True,
        },
    },
}

# enable_oauth2_auth (issue 16): non-JWT tokens on LLM API, info and /lens routes go to OAuth2
# introspection (before the master key); with JWT auth off, JWT-shaped ones too. Run with the
# OPAQUE_TOKENS below and two JWTs only.
MASTER = "sk-master-key-0123456789"
OPAQUE_CONFIGS: dict[str, dict[str, Any]] = {
    "oauth2-opaque": {
        "enable_oauth2_auth": True,
        "master_key": MASTER,
        "litellm_jwtauth": {"user_id_jwt_field": "sub", "team_id_jwt_field": "client_id"},
    },
    "oauth2-opaque-models": {
        "enable_oauth2_auth": True,
        "litellm_jwtauth": {"user_id_jwt_field": "sub"},
        "role_permissions": [{"role": "team", "models": ["gpt-4o"]}],
    },
    "oauth2-opaque-no-jwt": {
        "enable_jwt_auth": False,
        "enable_oauth2_auth": True,
        "master_key": MASTER,
        "litellm_jwtauth": {},
    },
}
ALL_CONFIGS = {**CONFIGS, **OPAQUE_CONFIGS}

# ---------------------------------------------------------------------------------------------
# Tokens: claims (signed RS256 with exp an hour ahead unless said otherwise).
ADMIN_SCOPES = "openid litellm_proxy_admin litellm-proxy-admin"
TOKENS: dict[str, dict[str, Any]] = {
    "user": {"sub": "alice", "roles": ["basic_user"], "email": "alice@example.com"},
    "user-no-role": {"sub": "bob", "email": "bob@example.com"},
    "user-role-string": {"sub": "carol", "roles": "basic_user"},
    "role-only": {"roles": ["basic_user"]},
    "role-string-only": {"roles": "basic_user"},
    "team": {"client_id": "team-a", "sub": "svc", "org_id": "org-1", "customer_id": "cust-1"},
    "team-list": {"client_id": ["team-b", "team-c"], "sub": "svc2"},
    "team-numeric": {"client_id": 42},
    "team-and-role": {"client_id": "team-a", "sub": "alice", "roles": ["basic_user"]},
    "admin": {"sub": "root", "scope": ADMIN_SCOPES},
    "admin-list": {"sub": "root", "scope": ["litellm_proxy_admin", "litellm-proxy-admin"]},
    "admin-scp": {"sub": "root", "scp": "litellm_proxy_admin litellm-proxy-admin"},
    "admin-with-team": {"sub": "root", "scope": ADMIN_SCOPES, "client_id": "team-a"},
    "email-upper": {"sub": "dave", "email": "dave@EXAMPLE.com"},
    "email-other": {"sub": "eve", "email": "eve@evil.com"},
    "email-trick": {"sub": "mal", "email": "a@evil.com?@example.com"},
    "email-missing": {"sub": "nomail"},
    "keycloak": {
        "sub": "kc",
        "resource_access": {"litellm-test-client-id": {"roles": ["basic_user"]}},
    },
    "auth0": {"https://example.com/roles": ["basic_user"], "sub": "auth0|1"},
    "empty": {},
    "groups": {"sub": "gina", "groups": ["research", "eng"]},
    "groups-unknown": {"sub": "gus", "groups": ["ghost"]},
    "groups-mixed": {"sub": "gil", "groups": ["ghost", "team-c"]},
    "alias": {"sub": "al", "team_name": "Alpha"},
    "alias-unknown": {"sub": "al2", "team_name": "Nobody"},
    "team-blocked": {"client_id": "blocked-team", "sub": "bt"},
    "team-unknown": {"client_id": "ghost-team", "sub": "gt"},
    "iss-a": {"iss": IDP_A, "aud": "api-a", "sub": "ua", "tid": "team-ia"},
    "iss-a-wrong-aud": {"iss": IDP_A, "aud": "api-b", "sub": "ua", "tid": "team-ia"},
    "iss-a-global-team": {"iss": IDP_A, "aud": "api-a", "client_id": "team-a"},
    "iss-a-blocked": {"iss": IDP_A, "aud": ["x", "api-a"], "tid": "blocked-team"},
    "iss-a-wids": {
        "iss": IDP_A,
        "aud": "api-a",
        "sub": "ua",
        "wids": ["research"],
        "groups": ["eng"],
    },
    "iss-a-no-wids": {"iss": IDP_A, "aud": "api-a", "sub": "ua", "groups": ["team-c"]},
    "iss-b": {"iss": IDP_B, "aud": "api-b", "oid": "obj-1", "upn": "b@example.com"},
    "mallory": {"sub": "mallory", "client_id": "team-a"},
    # Entra ID access tokens: app roles in `roles`, the object id in `oid`
    "entra-consumer": {
        "oid": "6e1a-consumer",
        "roles": ["litellm.api.consumer"],
        "azp": "app-1",
        "sub": "s-consumer",
        "tid": "tenant-1",
    },
    "entra-user": {"oid": "7f2b-user", "roles": ["litellm.api.user"], "sub": "s-user"},
    "entra-two-roles": {"oid": "8a3c-both", "roles": ["litellm.api.user", "litellm.api.consumer"]},
    "entra-app-admin": {"oid": "9b4d-admin", "roles": ["litellm.api.admin"]},
    "entra-no-oid": {"roles": ["litellm.api.consumer"], "sub": "s-no-oid"},
    "entra-other-role": {"oid": "0c5e-other", "roles": ["Directory.Read"]},
    "entra-oid-list": {"oid": ["a", "b"], "roles": ["litellm.api.consumer"]},
    "entra-roles-object": {"oid": "1d6f-obj", "roles": {"litellm.api.consumer": True}},
    # Okta access tokens: groups, and scopes in `scp` (a list) or `scope` (a string)
    # Introspected JWTs (routing_overrides): "introspection" is what the stand-in answers
    "oauth2-team": {
        "iss": PARTNER,
        "sub": "svc-p",
        "scope": "openid llm.chat",
        "introspection": {"active": True, "sub": "svc-p", "team_id": "team-p"},
    },
    "oauth2-user": {
        "iss": PARTNER,
        "sub": "u-p",
        "introspection": {"active": True, "sub": "u-p", "role": "internal_user"},
    },
    "oauth2-admin": {
        "iss": PARTNER,
        "sub": "root-p",
        "scope": "llm.admin",
        "introspection": {"active": True, "sub": "root-p", "role": "proxy_admin"},
    },
    "oauth2-inactive": {
        "iss": PARTNER,
        "sub": "gone",
        "scope": "llm.chat",
        "introspection": {"active": False},
    },
    "oauth2-bad-role": {
        "iss": PARTNER,
        "sub": "x",
        "introspection": {"active": True, "sub": "x", "role": "superuser"},
    },
    "okta-admin": {"sub": "00u-admin", "groups": ["Everyone", "litellm-admins-prod"]},
    "okta-member": {"sub": "00u-member", "groups": ["Everyone", "litellm-users"]},
    "okta-everyone": {"sub": "00u-everyone", "groups": ["Everyone"]},
    "okta-admin-no-sub": {"groups": ["litellm-admins-prod"]},
    "okta-admin-client": {"sub": "00u-ops", "client_id": "team-a", "groups": ["litellm-admins-x"]},
    "okta-admin-email-only": {"email": "ops@example.com", "groups": ["litellm-admins-ops"]},
    "okta-team-group": {"uid": "00u-team", "groups": ["LiteLLM Teams"]},
    "okta-user-group": {"uid": "00u-user", "groups": ["Everyone", "LiteLLM Users"]},
    "okta-scope-gpt": {"sub": "00u-gpt", "scope": "openid litellm.models.gpt"},
    "okta-scope-both": {
        "sub": "00u-both",
        "scope": ["litellm.models.gpt", "litellm.models.claude"],
    },
    "okta-scope-none": {"sub": "00u-none", "scope": "openid profile"},
    "okta-scp-claude": {"sub": "00u-scp", "scp": ["litellm.models.claude"]},
    "okta-scope-admin": {"cid": "okta-app", "scope": "litellm-proxy-admin litellm.models.gpt"},
    "okta-scope-team": {"cid": "okta-app", "scope": "litellm.models.claude"},
}
# The team registry of the "teams-*" configs (LiteLLM_TeamTable fields); LiteLLM's database
# stand-in holds the same teams. Other configs have none: every team exists, every model.
TEAM_REGISTRY: list[dict[str, Any]] = [
    {"team_id": "team-a", "team_alias": "Alpha", "models": ["anthropic-claude"]},
    {"team_id": "team-b", "models": []},
    {"team_id": "team-c", "team_alias": "Gamma", "models": ["gpt-4o"]},
    {"team_id": "eng", "models": ["gpt-4o", "claude-*"]},
    {"team_id": "research", "models": ["anthropic-claude"]},
    {"team_id": "everything", "models": ["all-proxy-models"]},
    {"team_id": "blocked-team", "models": [], "blocked": True},
]


def registry_of(config: str) -> list[dict[str, Any]] | None:
    return TEAM_REGISTRY if config.startswith("teams-") else None


def snapshot_of(config: str) -> StateSnapshot:
    teams = registry_of(config)
    if teams is None:
        return StateSnapshot()
    return StateSnapshot.of(
        frozenset(t["team_id"] for t in teams if t.get("blocked")),
        frozenset(),
        1,
        [TeamEntry(t["team_id"], t.get("team_alias"), tuple(t["models"])) for t in teams],
    )
# Opaque tokens: what the introspection stand-in answers for each (and two it does not know).
OPAQUE_TOKENS: dict[str, str] = {
    "opq-team": opaque_token({"active": True, "sub": "svc-o", "team_id": "team-o"}),
    "opq-user": opaque_token({"active": True, "sub": "u-o", "role": "internal_user"}),
    "opq-admin": opaque_token({"active": True, "sub": "root-o", "role": "proxy_admin"}),
    "opq-inactive": opaque_token({"active": False, "sub": "gone", "team_id": "team-o"}),
    "opq-bad-role": opaque_token({"active": True, "sub": "x", "role": "superuser"}),
    "opq-no-caller": opaque_token({"active": True, "client_id": "app"}),
    "opq-unknown": "an-opaque-token-nobody-issued",
    "master-key": MASTER,
}
OPAQUE_JWTS = ("oauth2-team", "team")  # verified as JWTs, or (JWT auth off) introspected
EXPIRED = "expired"  # signed two hours ago, expired an hour ago
NO_EXP = "no-exp"
SPECIAL_TOKENS = {
    EXPIRED: {"sub": "alice", "roles": ["basic_user"], "client_id": "team-a"},
    NO_EXP: {"sub": "alice", "roles": ["basic_user"], "client_id": "team-a"},
}


# ---------------------------------------------------------------------------------------------
# Requests: (method, path with query, JSON body, extra headers).
@dataclass(frozen=True)
class Req:
    id: str
    method: str
    path: str
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    client: str = "127.0.0.1"  # the peer address Envoy reports ("": none)
    key_in: str = "authorization"  # the header the token is sent in, as 'Bearer <token>'


def chat(model: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}


REQUESTS = [
    Req("chat-claude", "POST", "/v1/chat/completions", chat("anthropic-claude")),
    Req("chat-gpt-4o", "POST", "/chat/completions", chat("gpt-4o")),
    Req("chat-glob-name", "POST", "/v1/chat/completions", chat("claude-3-5-sonnet")),
    Req("chat-star-literal", "POST", "/v1/chat/completions", chat("gpt-*")),
    Req("embeddings", "POST", "/v1/embeddings", {"model": "gpt-4o", "input": "x"}),
    Req("messages", "POST", "/v1/messages", chat("anthropic-claude")),
    Req("models", "GET", "/v1/models"),
    Req("team-info", "GET", "/team/info"),
    Req("team-block", "POST", "/team/block", {"team_id": "t"}),
    Req("key-generate", "POST", "/key/generate"),
    Req("global-spend", "GET", "/global/spend/logs"),
    Req("mcp", "GET", "/mcp/tools/list"),
    Req("google", "POST", "/v1beta/models/gpt-4o:generateContent"),
    Req("bedrock", "POST", "/bedrock/model/claude/invoke"),
    Req("query-model", "POST", "/v1/chat/completions?model=gpt-4o", chat("anthropic-claude")),
    Req(
        "team-header-own",
        "POST",
        "/v1/chat/completions",
        chat("anthropic-claude"),
        {"x-litellm-team-id": "team-a"},
    ),
    Req(  # an Entra team named by its oid (entra-consumer), and its azp (a team claim)
        "team-header-oid",
        "POST",
        "/v1/chat/completions",
        chat("gpt-4o"),
        {"x-litellm-team-id": "6e1a-consumer"},
    ),
    Req(
        "team-header-azp",
        "POST",
        "/v1/chat/completions",
        chat("gpt-4o"),
        {"x-litellm-team-id": "app-1"},
    ),
    Req(
        "team-header-alias",
        "POST",
        "/v1/chat/completions",
        chat("gpt-4o"),
        {"x-litellm-team-id": "Gamma"},
    ),
    Req(
        "team-header-other",
        "POST",
        "/v1/chat/completions",
        chat("anthropic-claude"),
        {"x-litellm-team-id": "team-z"},
    ),
    Req("ip-other", "POST", "/v1/chat/completions", chat("gpt-4o"), client="10.9.9.9"),
    Req("ip-v6", "POST", "/v1/chat/completions", chat("gpt-4o"), client="::1"),
    Req("ip-v4-mapped", "POST", "/v1/chat/completions", chat("gpt-4o"), client="::ffff:127.0.0.1"),
    Req("ip-none", "POST", "/v1/chat/completions", chat("gpt-4o"), client=""),
    Req("xff-one", "GET", "/v1/models", headers={"x-forwarded-for": "203.0.113.7"}),
    Req("xff-chain", "GET", "/v1/models", headers={"x-forwarded-for": "198.51.100.1, 203.0.113.7"}),
    Req("xff-spoof", "GET", "/v1/models", headers={"x-forwarded-for": "203.0.113.7, 198.51.100.1"}),
    Req("key-header", "POST", "/v1/chat/completions", chat("gpt-4o"), key_in="x-my-key"),
    Req("litellm-public", "GET", "/health/liveliness"),  # in LiteLLMRoutes.public_routes
    Req("key-header-junk", "POST", "/v1/chat/completions", chat("gpt-4o"), {"x-my-key": "junk"}),
    Req("chat-user", "POST", "/v1/chat/completions", chat("gpt-4o", user="end-user-1")),
    Req("embeddings-user-query", "POST", "/v1/embeddings?user=u1", {"model": "gpt-4o"}),
]


@dataclass(frozen=True)
class Case:
    config: str
    token: str
    request: Req

    @property
    def id(self) -> str:
        return f"{self.config}/{self.token}/{self.request.id}"

    @property
    def settings(self) -> dict[str, Any]:
        return ALL_CONFIGS[self.config]

    @property
    def jwtauth(self) -> dict[str, Any]:
        jwtauth: dict[str, Any] = self.settings["litellm_jwtauth"]
        return jwtauth

    @property
    def claims(self) -> dict[str, Any]:
        return {} if self.token in OPAQUE_TOKENS else {**TOKENS, **SPECIAL_TOKENS}[self.token]


CASES = [
    Case(c, t, r) for c, t, r in itertools.product(CONFIGS, [*TOKENS, *SPECIAL_TOKENS], REQUESTS)
] + [
    Case(c, t, r)
    for c, t, r in itertools.product(OPAQUE_CONFIGS, [*OPAQUE_TOKENS, *OPAQUE_JWTS], REQUESTS)
]


# ---------------------------------------------------------------------------------------------
# The deliberate differences. Each: a title (the README lists it, word for word) and when it
# explains a disagreement (our decision, LiteLLM's outcome). Stricter ones explain our deny
# where LiteLLM allows; the others, our allow where LiteLLM denies.
Explains = Callable[[Case, Decision, Outcome], bool]


def _denied(reason: Reason, *more: Reason) -> Callable[[Decision], bool]:
    return lambda d: isinstance(d, Deny) and d.reason in (reason, *more)


def _has_user_id(case: Case) -> bool:
    field_name = case.jwtauth.get("user_id_jwt_field")
    return field_name is not None and case.claims.get(field_name) is not None


def _domain_after_last_at(case: Case) -> str | None:
    email = case.claims.get("email")
    return email.rsplit("@", 1)[-1] if isinstance(email, str) and "@" in email else None


def _is_roles_shape(value: Any) -> bool:
    return value is None or isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )


@dataclass(frozen=True)
class Difference:
    title: str
    stricter: bool | None  # True: explains our denies; False: our allows; None: either
    explains: Explains


DIFFERENCES: dict[str, Difference] = {
    "roles-allow-list": Difference(
        "With `user_allowed_roles` set, a user id alone does not make an internal_user",
        True,
        lambda c, d, o: (
            _denied(Reason.NO_ROLE)(d) and "user_allowed_roles" in c.jwtauth and _has_user_id(c)
        ),
    ),
    "fail-closed-no-role": Difference(
        "a token that maps to no role is refused even without `enforce_rbac`",
        True,
        lambda c, d, o: _denied(Reason.NO_ROLE)(d) and not c.jwtauth.get("enforce_rbac"),
    ),
    "role-permissions-always": Difference(
        "`role_permissions` apply whether or not `enforce_rbac` is set",
        True,
        lambda c, d, o: (
            _denied(Reason.MODEL_NOT_ALLOWED, Reason.ROUTE_NOT_ALLOWED)(d)
            and not c.jwtauth.get("enforce_rbac")
            and bool(c.settings.get("role_permissions"))
        ),
    ),
    "team-routes-enforced": Difference(
        "`team_allowed_routes` are enforced for a team taken from `team_id_jwt_field`",
        True,
        lambda c, d, o: (
            _denied(Reason.ROUTE_NOT_ALLOWED)(d) and d.role is not None and d.role.value == "team"
        ),
    ),
    "internal-user-routes": Difference(
        "An internal_user may call only `extauthz.internal_user_allowed_routes`",
        True,
        lambda c, d, o: (
            _denied(Reason.ROUTE_NOT_ALLOWED)(d)
            and d.role is not None
            and d.role.value == "internal_user"
        ),
    ),
    "models-outside-body": Difference(
        "Models named in paths, forms and the query are checked",
        True,
        lambda c, d, o: (
            _denied(Reason.MODEL_NOT_ALLOWED, Reason.MODEL_UNCHECKABLE)(d)
            and (c.request.path.find("?model=") > 0 or c.request.id in ("google", "bedrock"))
        ),
    ),
    "email-parsed": Difference(
        "The email gate parses the address",
        True,
        lambda c, d, o: (
            _denied(Reason.EMAIL_DOMAIN_NOT_ALLOWED)(d)
            and _domain_after_last_at(c) == c.jwtauth.get("user_allowed_email_domain")
        ),
    ),
    "exp-required": Difference(
        "`exp` is required by default",
        True,
        lambda c, d, o: _denied(Reason.MISSING_EXPIRY)(d) and c.token == NO_EXP,
    ),
    "scp-scopes": Difference(
        "Scopes are read from `scp` as well as `scope`",
        None,  # such a caller is proxy_admin here, with the admin's routes and no model list
        lambda c, d, o: "scp" in c.claims and "scope" not in c.claims,
    ),
    "email-case": Difference(
        "the email domain is compared case-insensitively",
        False,
        lambda c, d, o: (
            isinstance(d, Allow)
            and (_domain_after_last_at(c) or "").lower()
            == c.jwtauth.get("user_allowed_email_domain")
            and _domain_after_last_at(c) != c.jwtauth.get("user_allowed_email_domain")
        ),
    ),
    "roles-string-whole": Difference(
        "a `roles` claim that is one string is one role",
        False,
        lambda c, d, o: isinstance(d, Allow) and isinstance(c.claims.get("roles"), str),
    ),
    "numeric-ids": Difference(
        "an integer id is its decimal string",
        False,
        lambda c, d, o: (
            isinstance(d, Allow)
            and any(isinstance(v, int) and not isinstance(v, bool) for v in c.claims.values())
            and "UserAPIKeyAuth" in o.message
        ),
    ),
    "litellm-public-routes": Difference(
        "LiteLLM's built-in public routes need a credential here",
        True,
        lambda c, d, o: isinstance(d, Deny) and o.role == "public",
    ),
    "xff-one-entry": Difference(
        "With `use_x_forwarded_for`, the client address is one `x-forwarded-for` entry",
        False,
        lambda c, d, o: (
            isinstance(d, Allow)
            and c.settings.get("use_x_forwarded_for") is True
            and "," in c.request.headers.get("x-forwarded-for", "")
        ),
    ),
    "ipv4-mapped": Difference(
        "An IPv4-mapped IPv6 client address is its IPv4 address",
        False,
        lambda c, d, o: isinstance(d, Allow) and c.request.client.startswith("::ffff:"),
    ),
    # Attribution only (both allow): LiteLLM tries a token's teams in set order, which varies
    # between processes; we try them in claim order.
    "first-team-in-claim": Difference(
        "of several teams in `team_ids_jwt_field` that may serve a request, the first in the "
        "claim is chosen",
        None,
        lambda c, d, o: (
            isinstance(d, Allow)
            and o.allowed
            and d.team_source is not None
            and d.team_source.startswith("first team in claim")
            and o.team_id in (c.claims.get("groups") or [])
        ),
    ),
    "custom-validate-only-true": Difference(
        "`custom_validate` lets a caller in only when it returns `True`",
        True,
        lambda c, d, o: (
            _denied(Reason.CUSTOM_VALIDATE_REFUSED)(d) and "truthy" in c.jwtauth["custom_validate"]
        ),
    ),
    "roles-claim-shape": Difference(
        "A roles claim (`roles_jwt_field`) that is not a string or a list of strings refuses "
        "the token",
        True,
        lambda c, d, o: (
            _denied(Reason.MALFORMED_TOKEN)(d)
            and "roles_jwt_field" in c.jwtauth
            and not _is_roles_shape(c.claims.get(c.jwtauth["roles_jwt_field"]))
        ),
    ),
    "scope-routes": Difference(
        "`scope_mappings[].routes` are enforced",
        True,
        lambda c, d, o: (
            _denied(Reason.ROUTE_NOT_ALLOWED)(d)
            and any(m.get("routes") for m in c.jwtauth.get("scope_mappings") or ())
        ),
    ),
    "oauth2-our-rules": Difference(
        "A caller resolved by OAuth2 introspection (`routing_overrides`) is held to its role's "
        "routes and models, and `x-litellm-team-id` may name only its team",
        True,
        lambda c, d, o: (
            _oauth2_judged(c, d)
            and _denied(
                Reason.ROUTE_NOT_ALLOWED,
                Reason.MODEL_NOT_ALLOWED,
                Reason.MODEL_UNCHECKABLE,
                Reason.TEAM_NOT_ALLOWED,
                Reason.NO_ROLE,
            )(d)
        ),
    ),
    "dotted-claim-names": Difference(
        "a claim whose name holds dots is found by its whole name",
        False,
        lambda c, d, o: (
            isinstance(d, Allow)
            and any("." in k for k in c.claims)
            and any("." in str(v) for v in c.jwtauth.values())
        ),
    ),
}


# ---------------------------------------------------------------------------------------------
def _oauth2_judged(c: Case, d: Decision) -> bool:
    return isinstance(d, Deny) and d.identity is not None and d.identity.kind == OAUTH2


def _policy_yaml(case_config: str) -> dict[str, Any]:
    return {
        "general_settings": {"enable_jwt_auth": True, **ALL_CONFIGS[case_config]},
        "extauthz": {"public_key_url": "https://idp.invalid/jwks"},
    }


async def _authorizers(environ: dict[str, str]) -> dict[str, Authorizer]:
    async def fetch(_url: str) -> dict[str, Any]:
        return jwks(rsa_jwk())

    out = {}
    for name in ALL_CONFIGS:
        loaded = compile_policy(_policy_yaml(name), environ, name)
        policy = loaded.policy
        source = JwksSource(loaded.settings.keys.urls, fetch=fetch)
        await source.refresh()
        issuer_keys = {i: JwksSource(urls, fetch=fetch) for i, urls in loaded.settings.keys.issuers}
        await asyncio.gather(*(s.refresh() for s in issuer_keys.values()))
        verifier = TokenVerifier(
            source, policy.token_rules, clock=time.time, issuer_keys=issuer_keys
        )
        out[name] = Authorizer(policy, verifier, StateView(snapshot_of(name)))
        if loaded.settings.keys.introspection is not None:
            client = IntrospectionClient(loaded.settings.keys.introspection)
            out[name].introspector = Introspector(client)
    return out


def _tokens(now: float) -> dict[str, str]:
    signed = {name: sign_token(rsa_key("a"), claims, now=now) for name, claims in TOKENS.items()}
    signed[EXPIRED] = sign_token(rsa_key("a"), SPECIAL_TOKENS[EXPIRED], now=now - 7200)
    pem = private_pem(rsa_key("a")).decode()
    kid = {"kid": public_jwk(rsa_key("a"))["kid"]}
    signed[NO_EXP] = str(jwt.encode(SPECIAL_TOKENS[NO_EXP], pem, algorithm="RS256", headers=kid))
    return {**signed, **OPAQUE_TOKENS}


@dataclass
class Run:
    ours: dict[str, Decision]
    theirs: dict[str, Outcome]


async def _run_all() -> Run:
    async with introspection_standin() as environ:
        return await _run_cases(environ)


async def _run_cases(environ: dict[str, str]) -> Run:
    authorizers = await _authorizers(environ)
    tokens = _tokens(time.time())
    jwk = rsa_jwk()
    ours: dict[str, Decision] = {}
    theirs: dict[str, Outcome] = {}
    for case in CASES:
        req = case.request
        token = tokens[case.token]
        body = json.dumps(req.body).encode() if req.method == "POST" else b""
        sent = {req.key_in: f"Bearer {token}"}
        headers = {**sent, **req.headers}
        if body:
            headers["content-type"] = "application/json"
        view = RequestView(req.method, req.path, headers, body, client_address=req.client)
        ours[case.id] = await authorizers[case.config].authorize(view)
        general = {"enable_jwt_auth": True, **case.settings}
        standard = req.key_in == "authorization"  # else the token is in the extra headers
        theirs[case.id] = await litellm_decides(
            general,
            jwk,
            token if standard else "",
            req.method,
            req.path,
            req.body,
            req.headers if standard else {**sent, **req.headers},
            client=req.client,
            teams=registry_of(case.config),
            issuer_keys={f"{IDP_A}/jwks": jwk, f"{IDP_B}/jwks": jwk},
        )
    for auth in authorizers.values():
        if auth.introspector is not None:
            await auth.introspector.close()
    return Run(ours, theirs)


@pytest.fixture(scope="module")
def run() -> Run:
    return asyncio.run(_run_all())


def explain(case: Case, ours: Decision, theirs: Outcome) -> list[str]:
    """The listed differences that explain this case's disagreement."""
    return [
        name
        for name, diff in DIFFERENCES.items()
        if diff.stricter in (None, isinstance(ours, Deny)) and diff.explains(case, ours, theirs)
    ]


def _show(decision: Decision) -> str:
    if isinstance(decision, Allow):
        return f"allow({decision.role.value if decision.role else None})"
    return f"deny({decision.status} {decision.reason.value})"


def test_every_disagreement_is_a_listed_difference(run: Run) -> None:
    """Allow/deny agrees with LiteLLM's, or a listed deliberate difference explains why not."""
    unexplained = []
    used: Counter[str] = Counter()
    agree = 0
    for case in CASES:
        ours, theirs = run.ours[case.id], run.theirs[case.id]
        if isinstance(ours, Allow) == theirs.allowed:
            agree += 1
            continue
        names = explain(case, ours, theirs)
        used.update(names[:1])
        if not names:
            unexplained.append(
                f"{case.id}: ours {_show(ours)}, LiteLLM "
                + ("allow" if theirs.allowed else f"deny({theirs.status} {theirs.message[:120]})")
            )
    total = len(CASES)
    print(
        f"\ndifferential: {total} cases, allow/deny agree in {agree} "
        f"({100 * agree / total:.1f} %); each disagreement by the first listed difference that "
        f"explains it: {dict(used.most_common())}"
    )
    assert not unexplained, f"{len(unexplained)} unexplained:\n" + "\n".join(unexplained[:60])


def test_allowed_callers_are_attributed_to_the_same_team(run: Run) -> None:
    """Where both allow, the team LiteLLM attributes spend to is ours (x-auth-team-id), except
    for the two README differences about attribution: an `scp` admin (an admin here, so no
    team) and an admin's ``x-litellm-team-id`` (ignored here, attached by LiteLLM)."""
    differ = []
    for case in CASES:
        ours, theirs = run.ours[case.id], run.theirs[case.id]
        if not (isinstance(ours, Allow) and theirs.allowed):
            continue
        if theirs.role == "public":  # LiteLLM's public-route shortcut reads no token at all
            continue
        if DIFFERENCES["scp-scopes"].explains(case, ours, theirs):
            continue
        if DIFFERENCES["first-team-in-claim"].explains(case, ours, theirs):
            continue
        admin_header = ours.role is Role.PROXY_ADMIN and "x-litellm-team-id" in case.request.headers
        if admin_header and theirs.team_id == case.request.headers["x-litellm-team-id"]:
            continue
        theirs_team = None if theirs.team_id is None else str(theirs.team_id)
        if ours.identity.team_id != theirs_team:
            differ.append(f"{case.id}: ours {ours.identity.team_id!r}, LiteLLM {theirs_team!r}")
    assert not differ, "\n".join(differ[:40])


def test_denials_agree_on_who_is_refused_for_tokens(run: Run) -> None:
    """Token problems: an expired token is refused by both, whatever the config and route
    (but on LiteLLM's public routes, where it reads no token)."""
    for case in CASES:
        if case.token == EXPIRED:
            ours, theirs = run.ours[case.id], run.theirs[case.id]
            if theirs.role == "public":  # compared by test_gate_keys_decide_in_both
                continue
            assert isinstance(ours, Deny) and not theirs.allowed


def test_gate_keys_decide_in_both(run: Run) -> None:
    """Each issue-16 key is exercised: it refuses (or admits without a token) here and in
    LiteLLM for the same cases, so the agreement above is not vacuous."""
    seen: Counter[str] = Counter()
    for case in CASES:
        ours, theirs = run.ours[case.id], run.theirs[case.id]
        if isinstance(ours, Deny) and ours.reason in (
            Reason.CLIENT_IP_NOT_ALLOWED,
            Reason.ROUTE_NOT_LISTED,
            Reason.ADMIN_ONLY_ROUTE,
        ):
            assert not theirs.allowed, case.id
            seen[ours.reason.value] += 1
        elif isinstance(ours, Allow) and ours.reason is Reason.PUBLIC_ROUTE:
            assert theirs.allowed and theirs.role == "public", case.id
            seen["public"] += 1
        elif case.config == "gate-key-header" and case.request.key_in == "x-my-key":
            assert isinstance(ours, Allow) == theirs.allowed or explain(case, ours, theirs)
            seen["key-header-allow" if theirs.allowed else "key-header-deny"] += 1
    assert set(seen) == {
        "client_ip_not_allowed",
        "route_not_listed",
        "admin_only_route",
        "public",
        "key-header-allow",
        "key-header-deny",
    }, seen


def test_enforce_user_param_decides_in_both(run: Run) -> None:
    """enforce_user_param refuses where LiteLLM refuses, and where LiteLLM's own check refuses
    we refuse too (for that reason, or an earlier one: our route check comes before it), admins
    and users and teams alike; both let the same requests with `user` through."""
    seen: Counter[str] = Counter()
    for case in CASES:
        if not case.config.startswith("user-param"):
            continue
        ours, theirs = run.ours[case.id], run.theirs[case.id]
        ours_missing = isinstance(ours, Deny) and ours.reason is Reason.USER_PARAM_MISSING
        theirs_missing = not theirs.allowed and "'user' param not passed in" in theirs.message
        if ours_missing:
            assert not theirs.allowed, case.id
        if theirs_missing:
            assert isinstance(ours, Deny) and theirs.status == 401, case.id
        if ours_missing and theirs_missing:
            assert isinstance(ours, Deny) and ours.status == theirs.status, case.id
            seen[f"missing-{ours.role.value if ours.role else None}"] += 1
        elif case.request.id in ("chat-user", "embeddings-user-query") and theirs.allowed:
            assert isinstance(ours, Allow) or explain(case, ours, theirs), case.id
            seen["with-user"] += isinstance(ours, Allow)
    assert {"missing-proxy_admin", "missing-team", "missing-internal_user", "with-user"} <= set(
        seen
    ), seen


def test_every_difference_is_in_the_readme() -> None:
    """Each listed difference is documented, word for word, in the README's section."""
    text = README.read_text()
    section = text[text.index("### Where we deliberately differ from LiteLLM") :]
    section = section[: section.index("\n## ")]
    for name, diff in DIFFERENCES.items():
        assert diff.title in section, name


def test_the_oracle_is_live(run: Run) -> None:
    """The oracle refuses and allows: not a stand-in that always says yes (or no)."""
    outcomes = Counter(o.allowed for o in run.theirs.values())
    assert outcomes[True] > 50 and outcomes[False] > 50
    assert any("No team found in token" in o.message for o in run.theirs.values())


def test_case_count() -> None:
    assert len(CASES) >= 500


def test_issuers_and_custom_validate_are_decided_alike(run: Run) -> None:
    """Issue 16's keys are exercised, not skipped: both sides allow an issuer's token with the
    team its own field names, and both refuse its wrong audience and what the validators refuse."""
    for case_id, allowed, team in (
        ("issuers/iss-a/chat-claude", True, "team-ia"),
        ("issuers/iss-a-global-team/chat-claude", True, "team-a"),
        ("issuers/iss-a-wrong-aud/chat-claude", False, None),
        ("issuers-validate/iss-a-blocked/chat-claude", False, None),
        ("issuers-validate/iss-a/chat-claude", True, "team-ia"),
        ("custom-validate/mallory/chat-claude", False, None),
        ("custom-validate/team/chat-claude", True, "team-a"),
        # an issuer's own team_ids_jwt_field, and the global one when its token lacks it
        ("teams-issuers/iss-a-wids/chat-claude", True, "research"),
        ("teams-issuers/iss-a-no-wids/chat-gpt-4o", True, "team-c"),
        ("teams-issuers/iss-a-wids/chat-gpt-4o", False, None),
    ):
        ours, theirs = run.ours[case_id], run.theirs[case_id]
        assert isinstance(ours, Allow) == allowed == theirs.allowed, (case_id, ours, theirs)
        if allowed:
            assert isinstance(ours, Allow) and ours.identity.team_id == team == theirs.team_id
    b_id = "issuers/iss-b/models"
    b = run.ours[b_id]  # B's user id claim is "oid"; no team: refused by both
    assert isinstance(b, Deny) and b.reason is Reason.NO_TEAM and not run.theirs[b_id].allowed
    assert b.identity is not None and (b.identity.user_id, b.identity.issuer) == ("obj-1", IDP_B)


def test_routing_overrides_are_decided_alike(run: Run) -> None:
    """routing_overrides are exercised on both sides: LiteLLM's own check_oauth2_token and our
    introspection ask the same stand-in endpoint; a route LiteLLM does not introspect on, or a
    token no rule matches, is verified as a JWT by both."""
    for case_id, allowed, kind in (
        ("oauth2-override/oauth2-team/chat-claude", True, OAUTH2),
        ("oauth2-override/oauth2-user/messages", True, OAUTH2),
        ("oauth2-override/oauth2-admin/team-info", True, OAUTH2),
        ("oauth2-override/oauth2-inactive/chat-claude", False, None),
        ("oauth2-override/oauth2-bad-role/chat-claude", False, None),
        ("oauth2-override/oauth2-team/team-block", False, "jwt"),  # not introspected there
        ("oauth2-override-scope/oauth2-team/chat-gpt-4o", True, OAUTH2),
        ("oauth2-override-scope/oauth2-team/chat-claude", False, OAUTH2),  # the team's models
        ("oauth2-override-scope/oauth2-user/chat-gpt-4o", False, "jwt"),  # no scope: no match
    ):
        ours, theirs = run.ours[case_id], run.theirs[case_id]
        if case_id.endswith("oauth2-team/chat-claude") and "scope" in case_id:
            assert theirs.allowed and DIFFERENCES["role-permissions-always"].explains(
                CASES_BY_ID[case_id], ours, theirs
            )
        else:
            assert isinstance(ours, Allow) == allowed == theirs.allowed, (case_id, ours, theirs)
        if kind is not None:
            assert ours.identity is not None and ours.identity.kind == kind, case_id
    inactive = run.ours["oauth2-override/oauth2-inactive/chat-claude"]
    assert isinstance(inactive, Deny) and inactive.reason is Reason.INTROSPECTION_REJECTED
    assert "not active" in run.theirs["oauth2-override/oauth2-inactive/chat-claude"].message
    team = run.ours["oauth2-override/oauth2-team/chat-claude"]
    assert isinstance(team, Allow) and team.identity.team_id == "team-p" == run.theirs[
        "oauth2-override/oauth2-team/chat-claude"
    ].team_id


CASES_BY_ID = {case.id: case for case in CASES}


def test_enable_oauth2_auth_is_decided_alike(run: Run) -> None:
    """enable_oauth2_auth is exercised on both sides: an opaque token on an LLM API or info route
    is introspected (LiteLLM's own check_oauth2_token and ours ask the same stand-in), the master
    key there too in LiteLLM (refused by both), while elsewhere it is the master key or nothing;
    with JWT auth off, a JWT-shaped token is introspected as well."""
    for case_id, allowed, kind in (
        ("oauth2-opaque/opq-team/chat-claude", True, OAUTH2),
        ("oauth2-opaque/opq-user/messages", True, OAUTH2),
        ("oauth2-opaque/opq-admin/team-info", True, OAUTH2),
        ("oauth2-opaque/opq-inactive/chat-claude", False, None),
        ("oauth2-opaque/opq-unknown/models", False, None),
        ("oauth2-opaque/opq-team/key-generate", False, None),  # not introspected there
        ("oauth2-opaque/master-key/chat-claude", False, None),  # LiteLLM introspects it
        ("oauth2-opaque/master-key/key-generate", True, MASTER_KEY),
        ("oauth2-opaque/team/chat-claude", True, "jwt"),  # a JWT under JWT auth: verified
        ("oauth2-opaque-models/opq-team/chat-gpt-4o", True, OAUTH2),
        ("oauth2-opaque-no-jwt/oauth2-team/chat-claude", True, OAUTH2),
        ("oauth2-opaque-no-jwt/team/chat-claude", False, None),  # introspected: unknown there
        ("oauth2-opaque-no-jwt/team/key-generate", False, None),
    ):
        ours, theirs = run.ours[case_id], run.theirs[case_id]
        assert isinstance(ours, Allow) == allowed == theirs.allowed, (case_id, ours, theirs)
        if kind is not None:
            assert ours.identity is not None and ours.identity.kind == kind, case_id
    for case_id in ("oauth2-opaque/opq-inactive/chat-claude", "oauth2-opaque/master-key/models"):
        assert "not active" in run.theirs[case_id].message, case_id
    master = run.ours["oauth2-opaque/master-key/chat-claude"]
    assert isinstance(master, Deny) and master.reason is Reason.INVALID_API_KEY
    assert MASTER not in master.message
    team = run.ours["oauth2-opaque/opq-team/chat-claude"]
    assert isinstance(team, Allow) and team.identity.team_id == "team-o" == run.theirs[
        "oauth2-opaque/opq-team/chat-claude"
    ].team_id
    # the team's model list applies here (a listed difference), not in LiteLLM
    claude = CASES_BY_ID["oauth2-opaque-models/opq-team/chat-claude"]
    ours, theirs = run.ours[claude.id], run.theirs[claude.id]
    assert isinstance(ours, Deny) and theirs.allowed
    assert "oauth2-our-rules" in explain(claude, ours, theirs)
