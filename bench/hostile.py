"""`python -m bench.hostile`: the run lives in harness/hostile.py (tests use it too)."""

from harness.hostile import main

if __name__ == "__main__":
    raise SystemExit(main())
