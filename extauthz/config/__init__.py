"""Configuration: read LiteLLM-style YAML, resolve ``os.environ/`` references, validate, compile.

Owns nothing at request time: its output is an immutable ``Policy`` the decision core reads.
"""
