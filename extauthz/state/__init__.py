"""State that changes at run time (blocked teams and end users, the user registry).

The decision path reads an immutable ``StateSnapshot`` held in memory and never waits on a store.

    protocol   the StateStore protocol and its values (imports no adapter)
    memory     memory://        sqlite   sqlite:///path        postgres   postgresql://...
    schema     the shared DDL and its versioned migrations
    urls       --state URL → store (ConfigError for a URL that cannot work)
    watcher    keeps the snapshot fresh (LISTEN/NOTIFY or polling, resync, backoff, readiness)
    users      the user registry's batched, off-request-path writer

Nothing here imports the gRPC or HTTP adapters; ``extauthz.admin`` wires it in.
"""
