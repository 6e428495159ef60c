"""Identity: signing keys (JWKS, discovery, file://), token verification, claim reading.

Verification is pure given a key ring and a clock value; fetching keys is the only I/O here.
"""
