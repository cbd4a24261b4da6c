"""`python -m perception.train ...`: the train command without the node's CLI (and its imports)."""

from __future__ import annotations

import argparse
import sys

from perception.core.errors import PerceptionError
from perception.train.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m perception.train", description="train the tiny panoptic model")
    add_arguments(parser)
    try:
        return run(parser.parse_args())
    except PerceptionError as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
