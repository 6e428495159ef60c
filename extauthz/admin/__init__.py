"""The admin API (HTTP and gRPC) over the state store, and the state wiring of a running sidecar."""
