"""`python -m bench.junk_memory`: the run lives in harness/junk_memory.py (tests use it too)."""

from harness.junk_memory import main

if __name__ == "__main__":
    raise SystemExit(main())
