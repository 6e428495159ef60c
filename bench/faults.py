"""`python -m bench.faults`: the run lives in harness/faults.py (tests use it too)."""

from harness.faults import main

if __name__ == "__main__":
    raise SystemExit(main())
