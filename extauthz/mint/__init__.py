"""The token-minting sidecar (``extauthz mint``).

Turns the upstream credentials of a LiteLLM ``model_list`` (workload OIDC tokens exchanged at AWS
STS or Microsoft Entra, or static keys) into files that Envoy's own upstream filters read and
reload: ``NAME.aws_credentials`` for ``aws_request_signing`` and ``NAME.sds.yaml`` for
``credential_injector``. Nothing on the request path imports this package.
"""
