"""The one bot in the lobby: answering, sending and withdrawing invitations (`Lobby`, a part of
`node.botbrain.Bot`).

An idle bot accepts an incoming invitation: the first, or people's before bots' with
``people_first``. A person's invitation (from a name that is not one of the crew's bots) is
accepted ``accept_pause_s`` after the bot saw it, and ``greeting`` (if set) goes to the new
game's chat, so the person sees the invitation arrive and be accepted. After an accept the bot
answers no other invitation until that game's first push came, for at most
`ACCEPTED_GAME_WAIT_S`: the node may have created the game just as a drain moved the bot, and a
second accept of the same invitation at a new node that does not hold that game yet would start
a second game.

A bot with a partner also invites, ``invite_per_s`` times a second when idle (its machine draws
that chance) and ``pause_s`` after its last game: first the opponent of a game it saved, to
resume it; else its partner if the lobby shows it idle, else (with ``invite_anyone``) a random
idle player. Every invitation asks for the ``clock`` time control when one is set. An
invitation unanswered for `INVITE_PATIENCE_S` is withdrawn; after an invitation it sends none
for ``reinvite_s`` (a node may drop an invitation it acknowledged before it counted the inviter
online). A bot without a partner never invites, so bots reserved for people are left alone by
the others when nobody has them as partner; such a bot made ``people_only`` also declines any
invitation from one of the crew's bots (noted ``declined``), so it stays free for people.
"""

from __future__ import annotations

from typing import Any

from meridian.node.botworld import BotHandle, Reply, Then, error_code, ignore

INVITE_PATIENCE_S = 8.0
ACCEPTED_GAME_WAIT_S = 3.0
LOBBY_PUSHES = ("lobby", "lobby_update", "invites")


class Lobby:
    """What one bot knows of the lobby and its invitations (see module docstring)."""

    def __init__(self, bot: BotHandle) -> None:
        self.bot = bot
        self.invites: Reply = {}
        self.players: dict[str, Reply] = {}  # name -> the lobby's entry
        self.invited_at = -INVITE_PATIENCE_S
        self.pause_until = 0.0
        self.accept_at: dict[str, float] = {}  # a person's invitation -> when to accept it
        self.refused: set[str] = set()
        self.saved_with: tuple[str, str] | None = None  # (opponent, gid) to resume
        self.awaiting: tuple[str, float] | None = None  # (gid, until): an accepted game not seen
        self.last_own_game = ""  # the game of the last push about a game this bot plays

    def push(self, push: Reply) -> None:
        """Take a push of a kind in `LOBBY_PUSHES`."""
        kind = push["type"]
        if kind == "lobby":
            self.players = {entry["name"]: entry for entry in push["players"]}
        elif kind == "lobby_update":
            for name in push["gone"]:
                self.players.pop(name, None)
            self.players.update({entry["name"]: entry for entry in push["changed"]})
        elif kind == "invites":
            self.invites = push

    def game_over(self, now: float) -> None:
        self.pause_until = now + self.bot.settings.pause_s

    def own_game_seen(self, gid: str) -> None:
        """A push about a game this bot plays arrived."""
        self.last_own_game = gid
        if self.awaiting is not None and self.awaiting[0] == gid:
            self.awaiting = None

    def saved(self, opponent: str, gid: str) -> None:
        self.saved_with = (opponent, gid)

    def playing(self) -> list[str]:
        """The games being played, as the lobby shows them (sorted)."""
        return sorted(e["game"] for e in self.players.values() if e["status"] == "playing")

    # --- invitations to this bot ----------------------------------------------------------

    def person_waiting(self) -> bool:
        """Whether a person's invitation to this bot is open or being accepted (the bot is
        about to play that person)."""
        incoming = self.invites.get("incoming", [])
        return bool(self.accept_at) or any(
            i["iid"] not in self.refused and not self.bot.is_bot(i["from"]) for i in incoming
        )

    def answer_or_withdraw(self, now: float) -> bool:
        """Answer an incoming invitation or withdraw a stale outgoing one; False when there is
        neither (the bot is free to do something else)."""
        if self.awaiting is not None:
            if now < self.awaiting[1]:
                return True  # an accepted game on its way: no second accept meanwhile
            self.awaiting = None
        incoming = [i for i in self.invites.get("incoming", []) if i["iid"] not in self.refused]
        if incoming:
            self._answer(now, incoming)
        elif self.invites.get("outgoing"):
            if now - self.invited_at > INVITE_PATIENCE_S:
                iid = self.invites["outgoing"][0]["iid"]
                self.bot.request("retract", lambda r: self._retracted(r, iid), invite=iid)
                self.invited_at = now
        else:
            return False
        return True

    def _retracted(self, reply: Reply, iid: str) -> None:
        """An invitation the node no longer knows is gone: forget it rather than wait for a
        push about it that will not come (its node may have dropped it unseen)."""
        if error_code(reply) == "not_found":
            outgoing = [i for i in self.invites.get("outgoing", []) if i["iid"] != iid]
            self.invites = {**self.invites, "outgoing": outgoing}

    def _answer(self, now: float, incoming: list[Reply]) -> None:
        """Accept an incoming invitation (a person's after ``accept_pause_s``); a bot that
        plays only people declines the bots' first."""
        bot, settings = self.bot, self.bot.settings
        from_bots = [i for i in incoming if bot.is_bot(i["from"])]
        if bot.people_only and from_bots:
            iid = from_bots[0]["iid"]
            self.refused.add(iid)  # answered: not again while the invites push lags
            bot.note("declined", invite=iid, sender=from_bots[0]["from"])
            bot.request("decline", ignore, invite=iid)
            return
        if settings.people_first:
            incoming = sorted(incoming, key=lambda i: bot.is_bot(i["from"]))
        invite = incoming[0]
        iid, person = invite["iid"], not bot.is_bot(invite["from"])
        if person and settings.accept_pause_s:
            due = self.accept_at.setdefault(iid, now + settings.accept_pause_s)
            if now < due:
                return
        bot.request("accept", lambda r: self._accepted(r, iid, person), invite=iid)

    def _accepted(self, reply: Reply, iid: str, person: bool) -> None:
        self.accept_at.pop(iid, None)
        if not reply.get("ok"):
            self.refused.add(iid)
            self.bot.note("accept_refused", invite=iid, error=error_code(reply))
            return
        if reply.get("game") and reply["game"] != self.last_own_game:
            self.awaiting = (str(reply["game"]), self.bot.now() + ACCEPTED_GAME_WAIT_S)
        if person and self.bot.settings.greeting:
            self.bot.request("chat", ignore, text=self.bot.settings.greeting, game=reply["game"])

    # --- invitations from this bot --------------------------------------------------------

    def maybe_invite(self, now: float, partner: str) -> None:
        """Invite unless the last game or invitation is too recent (``pause_s``,
        ``reinvite_s``)."""
        if now >= self.pause_until and now - self.invited_at >= self.bot.settings.reinvite_s:
            self._invite(now, partner)

    def _invite(self, now: float, partner: str) -> None:
        name = self.bot.name
        idle = sorted(
            e["name"] for e in self.players.values() if e["status"] == "idle" and e["name"] != name
        )
        if not idle:
            return
        if self.saved_with is not None and self.saved_with[0] in idle:
            self.invited_at = now
            opponent, gid = self.saved_with
            self._send_invitation(self._resume_invited, to=opponent, resume=gid)
        elif partner in idle or self.bot.settings.invite_anyone:
            self.invited_at = now
            target = partner if partner in idle else self.bot.rng.choice(idle)
            self._send_invitation(ignore, to=target)

    def _send_invitation(self, then: Then, **fields: Any) -> None:
        clock = self.bot.settings.clock
        if clock is not None:
            fields["clock"] = {"initial_s": clock[0], "increment_s": clock[1]}
        self.bot.request("invite", then, **fields)

    def _resume_invited(self, reply: Reply) -> None:
        if error_code(reply) == "not_found":
            self.saved_with = None  # resumed, parked or gone meanwhile
