"""Where the files shipped with Meridian are: the example node configs and the scenarios.

The repository keeps them in ``configs/`` (``configs/local/*.toml``, ``configs/scenarios/*.toml``);
``meridian/configs`` links there, and the wheel carries them as package data of ``meridian``,
so code finds them through the package whether it runs from a checkout or an installation.
(The web client is package data of ``meridian.node`` and is found next to ``node/web.py``.)

This module imports no layer, so every layer may use it. `is_checkout` tells the two cases
apart for what must differ: a checkout may write beside its configs (``data/`` is gitignored),
an installation must never write into its own folder (site-packages).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIGS_DIR = (PACKAGE_DIR / "configs").resolve()  # in a checkout: the repository's configs/
LOCAL_CONFIGS_DIR = CONFIGS_DIR / "local"
SCENARIOS_DIR = CONFIGS_DIR / "scenarios"
# Source trees of earlier releases (``git archive`` of their tags, gzipped), which mixed-version
# tests and ``meridian sim upgrade`` run beside this code without needing git or the tags.
RELEASES_DIR = CONFIGS_DIR / "releases"
# The file that marks a source checkout: the project's own build description, beside meridian/.
CHECKOUT_MARKER = "pyproject.toml"


def is_checkout() -> bool:
    """True when this package runs from a source checkout (editable install or PYTHONPATH),
    False when it was installed from a wheel."""
    linked = (PACKAGE_DIR / "configs").is_symlink()  # a wheel holds the files themselves
    return linked and (PACKAGE_DIR.parent / CHECKOUT_MARKER).is_file()


# `meridian demo` from an installation: the shipped configs are copied here (below the working
# directory) and their data_dir ("../../data/<region>") then lands in INSTALLED_DEMO_DIR/data.
INSTALLED_DEMO_DIR = "meridian-data"


def demo_configs_dir(workdir: Path) -> Path:
    """The folder of node configs `meridian demo` uses when none is given.

    In a checkout: configs/local itself (data in the repository's gitignored data/). From an
    installation: a copy in ``workdir/meridian-data/configs/local``, refreshed from the package,
    so the nodes' data and logs go to ``workdir/meridian-data/data`` and nothing is written into
    the installed package.
    """
    if is_checkout():
        return LOCAL_CONFIGS_DIR
    target = workdir / INSTALLED_DEMO_DIR / "configs" / "local"
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(LOCAL_CONFIGS_DIR.glob("*.toml")):
        copy = target / source.name
        text = source.read_bytes()
        if not copy.is_file() or copy.read_bytes() != text:
            copy.write_bytes(text)
    return target
