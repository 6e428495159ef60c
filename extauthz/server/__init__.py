"""Adapters at the edge: Envoy's gRPC ext_authz protocol, health, reflection, the HTTP side."""
