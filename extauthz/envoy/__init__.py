"""Envoy-facing adapters: gRPC and HTTP-service ext_authz, and their shared responder."""
