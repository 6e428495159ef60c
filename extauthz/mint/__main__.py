"""``python -m extauthz.mint``: the same command as ``extauthz mint``."""

from __future__ import annotations

import argparse
import sys

from extauthz.mint.cli import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the minter."""
    parser = argparse.ArgumentParser(
        prog="extauthz mint",
        description="Keep Envoy's upstream credentials (AWS STS, Entra, static keys) fresh.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
