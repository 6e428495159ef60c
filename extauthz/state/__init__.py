"""State that changes at run time (blocked teams and end users), behind one store protocol.

The decision path reads an immutable ``StateSnapshot`` held in memory and never waits on a store.
"""
