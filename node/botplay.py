"""The one bot at the table: the games it plays and watches (`Table`, a part of
`node.botbrain.Bot`).

On each of the bot's turns (its machine calls `Table.turn`) the bot plays after a think time
drawn from ``think_s``: the move policy's move, or with chance ``give_up`` it gives up, with
chance ``save`` it saves the game (and `Table` tells the bot's lobby, which later invites the
same opponent to resume it); a game with no progress for ``stall_s`` (if set) is saved and given
up on. While the opponent thinks it chats now and then (``chat``). A move with no news for
`MOVE_RETRY_S` may be sent again.

An idle bot may watch a game for a while (`WATCH_S`). `Table` keeps the newest push of every
game on the current connection (its end note reports them) and what hello's ``seen`` reports:
live games and the last ``finished_seen`` finished games, so that a node lacking what the bot
was shown tells it (a ``rollback``). Notes: ``shown`` (each game push), ``move`` (an
acknowledged move), ``move-unreplicated``, ``rollback``, ``stalled``.
"""

from __future__ import annotations

from collections.abc import Callable

from meridian.node.botworld import (
    TICK_S,
    BotHandle,
    MovePolicy,
    Reply,
    error_code,
    ignore,
)

MOVE_RETRY_S = 4.0  # a move with no news for this long may be sent again
MAX_LOST_LINES = 4  # hello's seen: lines per game told only a bound (docs/protocol.md)
WATCH_S = (3.0, 10.0)


class Table:
    """The games one bot plays and watches (see module docstring)."""

    def __init__(
        self, bot: BotHandle, policy: MovePolicy, on_saved: Callable[[str, str], None]
    ) -> None:
        self.bot = bot
        self.policy = policy
        self.on_saved = on_saved  # (opponent, gid) of a game it saved
        self.game: Reply | None = None  # the newest push of the game this client plays
        self.progress_at = 0.0  # when that game last moved on
        self.views: dict[str, Reply] = {}  # gid -> newest push on the current connection
        self.seen: dict[str, Reply] = {}  # gid -> {"ply", "head"} last shown (hello's "seen")
        self.finished: list[str] = []  # finished games still in `seen`, oldest first
        self.move_for: tuple[str, int] | None = None  # (game, ply) the next move is for
        self.move_due = 0.0
        self.watch_until = 0.0
        self.watching = ""  # the game watched (its pushes stop at unwatch)

    def new_connection(self) -> None:
        """Forget what the last connection showed (its pushes are the new node's now)."""
        self.views, self.game, self.move_for, self.watching = {}, None, None, ""

    # --- what the server shows ------------------------------------------------------------

    def shown(self, push: Reply) -> bool:
        """Take a ``game`` push; True when it ends the game this bot plays."""
        gid = push["game"]
        self.views[gid] = push
        # What this player saw: the shown-plies checker holds the cluster to it (sim.shown).
        self.bot.note("shown", uid=self.bot.uid, game=gid, ply=push["ply"], head=push["head"])
        self._remember_seen(push)
        if push["you"] is None:
            return False
        if push["status"] == "live":
            if self.game is None or self.game["game"] == gid:
                if self.game is None or self.game["ply"] != push["ply"]:
                    self.progress_at = self.bot.now()
                self.game = push
        elif self.game is not None and self.game["game"] == gid:
            self.game = None
            return True
        return False

    def _remember_seen(self, push: Reply) -> None:
        """What hello's ``seen`` reports: live games, and the last ``finished_seen`` finished
        games this bot played or watched."""
        gid, keep = push["game"], self.bot.settings.finished_seen
        if gid in self.finished:
            self.finished.remove(gid)
        entry = {"ply": push["ply"], "head": push["head"]}
        if lost := self.seen.get(gid, {}).get("lost"):
            entry["lost"] = lost  # until a settled rollback names where that line left
        if push["status"] == "live":
            self.seen[gid] = entry
        elif keep:  # played or only watched: either may be taken back
            self.seen[gid] = entry
            self.finished.append(gid)
            while len(self.finished) > keep:
                self.seen.pop(self.finished.pop(0), None)
        else:
            self.seen.pop(gid, None)

    def rollback(self, push: Reply) -> None:
        """A node took back plies this bot was shown: the next move is chosen afresh. A notice
        that is only a bound (``settled`` false) leaves the line it is about in hello's
        ``seen`` as ``lost``, until a settled one, so the next node that can place the line
        says where it really left (docs/protocol.md, *Who is told of a rollback*)."""
        gid = push["game"]
        self.bot.note("rollback", uid=self.bot.uid, game=gid, ply=push["ply"])
        self.move_for = None
        entry = self.seen.get(gid)
        if entry is not None:
            entry_with_lost_line(entry, push)

    # --- playing ------------------------------------------------------------------------------

    def turn(self, now: float, push: Reply) -> None:
        bot, settings = self.bot, self.bot.settings
        if settings.stall_s is not None and now - self.progress_at > settings.stall_s:
            self._leave_stalled(push)
            return
        if push["to_move"] != push["you"] or not push["legal"]:
            if bot.rng.random() < settings.chat * TICK_S:
                bot.request("chat", ignore, text="your move", game=push["game"])
            return
        if self.move_for != (push["game"], push["ply"]):
            self.move_for = (push["game"], push["ply"])
            self.move_due = now + bot.rng.uniform(*settings.think_s)
        if now < self.move_due:
            return
        self.move_due = now + MOVE_RETRY_S  # until a push shows the move (or it was refused)
        self._play(push)

    def _leave_stalled(self, push: Reply) -> None:
        """Save a game that made no progress for ``stall_s`` and stop waiting for it."""
        self.bot.note("stalled", uid=self.bot.uid, game=push["game"], ply=push["ply"])
        self.game = None
        self.bot.request("save", ignore, game=push["game"])

    def _play(self, push: Reply) -> None:
        bot, settings = self.bot, self.bot.settings
        gid, draw = push["game"], bot.rng.random()
        if draw < settings.give_up:
            bot.request("give_up", ignore, game=gid)
        elif draw < settings.give_up + settings.save:
            opponent = push["players"][1 - push["you"]]
            bot.request("save", lambda r: self._saved(r, opponent, gid), game=gid)
        else:
            move = self.policy(push, bot.rng)
            bot.request("move", lambda r: self._moved(r, push, move), game=gid, move=move)

    def _moved(self, reply: Reply, push: Reply, move: Reply) -> None:
        uid = self.bot.uid
        if reply.get("ok"):
            fields = {"game": push["game"], "ply": reply["ply"], "seat": push["you"]}
            self.bot.note("move", uid=uid, move=move, **fields)
        elif error_code(reply) == "not_replicated":
            self.bot.note("move-unreplicated", uid=uid, game=push["game"], move=move)

    def _saved(self, reply: Reply, opponent: str, gid: str) -> None:
        if reply.get("ok"):
            self.on_saved(opponent, gid)
            self.game = None

    # --- watching -----------------------------------------------------------------------------

    def watch(self, now: float, playing: list[str]) -> None:
        """Watch one of the games being played (sorted gids) for a while."""
        if playing:
            self.watching = self.bot.rng.choice(playing)
            self.bot.request("watch", self._watched, game=self.watching)
            self.watch_until = now + self.bot.rng.uniform(*WATCH_S)

    def _watched(self, reply: Reply) -> None:
        if reply.get("ok"):
            self.views[reply["game"]["game"]] = reply["game"]  # the view until the next push

    def maybe_unwatch(self, now: float) -> None:
        if now >= self.watch_until:
            self.views.pop(self.watching, None)
            self.watch_until, self.watching = 0.0, ""
            self.bot.request("unwatch", ignore)

    def end_views(self) -> dict[str, Reply]:
        """The latest view of each game it plays or watches on this connection (``end``)."""
        return {
            gid: {"ply": p["ply"], "status": p["status"], "head": p["head"], "you": p["you"]}
            for gid, p in sorted(self.views.items())
            if p["you"] is not None or gid == self.watching
        }


def entry_with_lost_line(entry: Reply, notice: Reply, keep: int = MAX_LOST_LINES) -> None:
    """Update one game's hello ``seen`` entry for a ``rollback`` notice about a `line` the bot
    reported (``line``: its ply and head): a settled notice drops that line from ``lost``; a
    bound (``settled`` false) adds it, or lowers its ``told`` (at most `keep` lines, the oldest
    dropped: each may have left the chain lower than it was told, until a node settles it)."""
    line, settled = notice.get("line"), notice.get("settled", True)
    if line is None:  # a notice to the game's audience: about the game as shown here, exact
        return
    before = entry.get("lost", [])
    lost = [item for item in before if item["head"] != line["head"]]
    if not settled:
        told = min([notice["ply"]] + [i["told"] for i in before if i["head"] == line["head"]])
        lost = [*lost, {"ply": line["ply"], "head": line["head"], "told": told}][-keep:]
    if lost:
        entry["lost"] = lost
    else:
        entry.pop("lost", None)
