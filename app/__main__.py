"""python -m app: the worker, the same as `workhorse run`."""

import sys

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run", *sys.argv[1:]]))
