"""``python -m meridian``: the same as the ``meridian`` command."""

from meridian.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
