"""Where a node process spends its time while a benchmark loads it: py-spy, summarised.

`sample(pid, seconds)` runs ``py-spy record`` against the running process (``--nonblocking``:
the process is not paused to read its stacks; ``--gil``: only the thread running Python code
counts, so the store's writer thread waiting in fsync or for work is not taken for CPU) and
`summarise` turns its raw stacks into shares of the busy samples: by area (our service code, the
sync engine and store, pycrdt, aiohttp, the asyncio loop, ...) and the functions with the most
time of their own. py-spy comes with the test extras (pyproject.toml); without it (or without
the right to read another process, as in some containers) the benchmark says so and goes on.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SAMPLES_PER_S = 200
# The first area whose marker is in a frame's file name gets the sample (own time of the
# innermost frame). Our code is split by layer; libraries by name.
AREAS = (
    ("meridian/node/", "node: service, topics, websocket adapter"),
    ("meridian/sync/", "sync: engine, codec, store"),
    ("meridian/crdt_models/", "crdt_models: records"),
    ("meridian/games/", "games: rules"),
    ("pycrdt", "pycrdt"),
    ("aiohttp", "aiohttp"),
    ("msgspec", "msgspec"),
    ("/json/", "json"),
    ("asyncio", "asyncio loop"),
    ("sqlite3", "sqlite3"),
)
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Profile:
    samples: int
    areas: list[tuple[str, float]]  # (area, share of busy samples), largest first
    functions: list[tuple[str, float]]  # (function (file), share of own time), largest first


def py_spy() -> str | None:
    """The py-spy command next to this Python (the venv's) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


async def sample(pid: int, seconds: float) -> Profile | str:
    """Sample process `pid` for `seconds`; a Profile, or why there is none."""
    command = py_spy()
    if command is None:
        return "no py-spy (pip install py-spy, or the test extras): no profile"
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "stacks.txt"
        process = await asyncio.create_subprocess_exec(
            *(command, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))),
            *("--rate", str(SAMPLES_PER_S), "--nonblocking", "--gil", "--format", "raw"),
            *("--output", str(raw)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, error = await process.communicate()
        if process.returncode != 0 or not raw.is_file():
            why = error.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            return f"py-spy could not sample the node ({why[0]}): no profile"
        return summarise(raw.read_text())


def summarise(raw: str, top: int = 12) -> Profile:
    """py-spy's raw output (``frame;frame;... count`` per line, outermost first)."""
    areas: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        function, file = _frame(frames[-1])
        areas[_area(file)] += int(count)
        functions[f"{function} ({_short(file)})"] += int(count)
    if not total:
        return Profile(0, [], [])
    return Profile(
        total,
        [(area, n / total) for area, n in areas.most_common()],
        [(name, n / total) for name, n in functions.most_common(top)],
    )


def _frame(text: str) -> tuple[str, str]:
    match = FRAME.match(text)
    return (match["function"], match["file"]) if match else (text, "")


def _area(file: str) -> str:
    return next((area for marker, area in AREAS if marker in file), "other (Python, C)")


def _short(file: str) -> str:
    """A file name from the package or library folder on (no venv or checkout prefix)."""
    for marker in ("/meridian/", "site-packages/", "/lib/python"):
        if marker in file:
            return file.split(marker, 1)[1]
    return Path(file).name or file


def print_profile(profile: Profile | str, what: str) -> None:
    if isinstance(profile, str):
        print(f"   {profile}")
        return
    print(f"   where {what} went (py-spy, {profile.samples:,} busy samples of the node process):")
    print("     " + ", ".join(f"{area} {share:.0%}" for area, share in profile.areas))
    for name, share in profile.functions:
        print(f"     {share:6.1%}  {name}")
