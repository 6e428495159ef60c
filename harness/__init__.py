"""The rigs that benchmarks (bench/) and robustness tests (tests/robustness) share: a real Envoy,
a subprocess sidecar, an IdP, generators of hostile input and faults, and the result tables."""
