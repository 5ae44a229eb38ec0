"""The ``account-editors`` workload: one account edited at once from its home and another region.

Home-region authority only decides something when two regions write one account concurrently,
which players rarely do. Each editor is an account registered in its home region (round robin
over the regions) that logs in there, and then, every ``edit_every_s`` until the heal, moves its
home (``POST /api/home``) to a random region, sending the request with chance ``away`` through a
client in another region to that region's node, otherwise through its home node. Only the home
region writes an account's home (docs/architecture.md, "Account authority"): a node of another
region must refuse the change with ``not_home``, and the home region's node may too while the
record that made it the home has not reached it yet. With chance ``rename`` an edit sent away
is a rename instead (the ``rename`` request on a websocket to that node), which a region that is
not the home may write: concurrent with a home move during a partition, the home region's
version must win (its name stands). Notes: ``account-rename``.
What each edit asked for, through which region, the home the editor believed in when it sent
it (``was_home``: the registration's, then each accepted move's; a node with a stale picture
may accept a move it takes for a no-op, so this is a belief) and what the node answered goes
into the notes (``account-edit``); the ``accounts`` checker holds that each home record was
written by the home of the one before and that refusals away from home say ``not_home``, and
compares every node's resolved accounts with the reference rule.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from meridian.node.botworld import PlayerSide
from meridian.sim.bots import PASSWORD
from meridian.sim.params import Table

Reply = dict[str, Any]


@dataclass
class Editor:
    name: str
    home: str
    clients: dict[str, PlayerSide]  # region -> a client sitting there
    uid: str = ""
    token: str = ""
    busy: bool = False
    due: float = 0.0
    renames: int = 0


@dataclass
class AccountEditors:
    """See module docstring."""

    editors: int
    edit_every_s: tuple[float, float]
    away: float
    start_s: float
    rename: float = 0.0
    _people: list[Editor] = field(default_factory=list)
    _calm: bool = False

    def step(self, now: float, nodes: Sequence[Any], rng: random.Random) -> float | None:
        if not self._people:
            self._start(nodes, rng)
        if self._calm:
            return None
        recorder = {node.node_id: node for node in nodes}
        for editor in self._people:
            if editor.busy or now < editor.due:
                continue
            if not editor.uid:
                self._register(editor, recorder)
            elif not editor.token:
                self._login(editor)
            else:
                self._edit(editor, recorder, rng)
                editor.due = now + rng.uniform(*self.edit_every_s)
        return now + 0.1

    def _start(self, nodes: Sequence[Any], rng: random.Random) -> None:
        players = nodes[0].players
        regions = list(players.regions)
        for index in range(self.editors):
            home = regions[index % len(regions)]
            clients = {region: players.new_client(region) for region in regions}
            due = self.start_s + rng.uniform(0, 1)
            self._people.append(Editor(f"editor{index}", home, clients, due=due))

    def _register(self, editor: Editor, recorder: dict[str, Any]) -> None:
        body = {"name": editor.name, "password": PASSWORD + editor.name, "home": editor.home}

        def done(reply: Reply) -> None:
            editor.busy = False
            if reply.get("ok"):
                editor.uid = reply["uid"]
                recorder[editor.home].note(
                    "registered", client=editor.name, uid=editor.uid, name=editor.name
                )

        editor.busy = True
        editor.clients[editor.home].http(editor.home, "/api/register", body, done)

    def _login(self, editor: Editor) -> None:
        body = {"name": editor.name, "password": PASSWORD + editor.name}

        def done(reply: Reply) -> None:
            editor.busy = False
            if reply.get("ok"):
                editor.token = reply["token"]

        editor.busy = True
        editor.clients[editor.home].http(editor.home, "/api/login", body, done)

    def _edit(self, editor: Editor, recorder: dict[str, Any], rng: random.Random) -> None:
        regions = sorted(editor.clients)
        others = [region for region in regions if region != editor.home]
        via = rng.choice(others) if others and rng.random() < self.away else editor.home
        if via != editor.home and rng.random() < self.rename:
            self._rename(editor, via, recorder)
            return
        region = rng.choice(regions)
        body = {"token": editor.token, "region": region}
        was_home = editor.home

        def done(reply: Reply) -> None:
            editor.busy = False
            code = "" if reply.get("ok") else reply.get("error", {}).get("code", "")
            if not code:
                editor.home = region
            recorder[via].note(
                "account-edit",
                client=editor.name,
                uid=editor.uid,
                home=region,
                via=via,
                was_home=was_home,
                ok=not code,
                code=code,
            )

        editor.busy = True
        editor.clients[via].http(via, "/api/home", body, done)

    def _rename(self, editor: Editor, via: str, recorder: dict[str, Any]) -> None:
        """Rename the account through a websocket to ``via`` (not its home)."""
        editor.renames += 1
        name = f"{editor.name}-{editor.renames}"
        client = editor.clients[via]

        def renamed(reply: Reply) -> None:
            editor.busy = False
            code = "" if reply.get("ok") else reply.get("error", {}).get("code", "")
            recorder[via].note(
                "account-rename", client=editor.name, uid=editor.uid, name=name, via=via, code=code
            )
            client.close()

        def hello(reply: Reply) -> None:
            if reply.get("ok"):
                client.request("rename", {"name": name}, renamed)
            else:
                renamed(reply)

        editor.busy = True
        client.connect(via, {"token": editor.token}, hello)

    def healed(self, now: float) -> None:
        self._calm = True

    def finish(self, now: float) -> None:
        return None


def build_account_editors(params: Table) -> AccountEditors:
    return AccountEditors(
        editors=params.integer("editors", 6, 1),
        edit_every_s=params.seconds_range("edit_every_s", (1.0, 3.0)),
        away=params.fraction("away", 0.5),
        start_s=params.number("start_s", 0.5, 0, inclusive=True),
        rename=params.fraction("rename", 0.0),
    )


EDITOR_KEYS = ("editors", "edit_every_s", "away", "start_s", "rename")
