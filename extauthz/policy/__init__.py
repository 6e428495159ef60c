"""The pure decision core: request view + verified identity + policy + state in, decision out.

Nothing here does I/O, reads a clock or imports protobuf; adapters live in ``extauthz.envoy``
and ``extauthz.admin``.
"""
