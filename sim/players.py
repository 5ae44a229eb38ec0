"""Simulated players: sans-IO clients of the game service, and the links between them and nodes.

A :class:`SimClient` is one player program: it talks to a node the way ``node.client`` does
(``POST /api/register`` and ``/api/login``, ``/api/home`` and ``/api/password`` with the session
token in the body, then a websocket whose first message is ``hello``),
but its messages are JSON text handed to the node's ``GameService`` (``connect``, ``receive``,
``disconnect``) after a virtual latency. :class:`PlayerNet` plays the node's side, as
``node.player_api`` does: it runs the production account flow (``node.account_flow``: the same
body schema, checks, limits and pull of the accounts document; only the effects are performed
on the virtual clock), feeds the service, runs ``process`` after every message, and delivers
what ``take_outgoing`` releases in order per connection. Holding a reply or push until
its change is durable (and replicated as ``ack_regions`` asks) is the service's own job
(``node.delivery``), so the simulator runs the production gate.

Latency: a player sits in a region (``client.region``); the node of that region is
``LOCAL_S`` away, another region's node as far as the scenario's one-way latency between the two
regions. Drops: a node that crashes or stops takes its connections with it (the clients see 1006
or the service's 4000); a partition between the player's region and a remote node's region cuts
the connections across it at once (production notices within its 20 s websocket heartbeat; the
simulator does not wait) and refuses new ones. A connection to a node whose machine vanished
fails after ``CONNECT_TIMEOUT_S``; to a down process, after one round trip.

Not modelled: the service's CPU time (it answers instantly) and the HTTP adapter's argon2 cost
(see ``sim.gamehost``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from meridian.crdt_models.accounts import ACCOUNTS_DOC
from meridian.node.account_flow import (
    AccountFlow,
    CheckPassword,
    Flow,
    HashPassword,
    HttpAnswer,
    RequestAccounts,
    answer_of,
    known_regions,
)
from meridian.node.delivery import Close, Outgoing
from meridian.node.protocol import (
    HomeBody,
    LoginBody,
    PasswordBody,
    Refused,
    RegisterBody,
    decode_body,
    encode_message,
)
from meridian.sim.clock import Scheduler
from meridian.sim.gamehost import STAND_IN_HASH, password_hash, password_matches
from meridian.sim.meta import url_node
from meridian.sim.network import Network
from meridian.sim.node import SimNode

LOCAL_S = 0.005  # one way, between a player and the node of its own region
CONNECT_TIMEOUT_S = 5.0
CLOSE_ABNORMAL = 1006  # what a websocket client reports when the TCP connection just died

Reply = dict[str, Any]  # {"ok": True, ...} or {"ok": False, "error": {"code", "message"}}
Done = Callable[[Reply], None]

# The pushes a simulated client reads (a few KB each, thousands per run): msgspec reads them
# about three times faster than the standard library.
_read_json = msgspec.json.Decoder().decode


def failure(code: str, message: str) -> Reply:
    return {"ok": False, "error": {"code": code, "message": message}}


@dataclass(eq=False)
class Link:
    """One websocket between a client and a node process."""

    conn_id: str
    client: SimClient
    node: SimNode
    incarnation: int
    server_open: bool = True  # the node still has it
    client_open: bool = True  # the client still has it


class PlayerNet:
    """Every player connection of a run (see module docstring)."""

    def __init__(
        self,
        scheduler: Scheduler,
        network: Network,
        nodes: dict[str, SimNode],
    ) -> None:
        self.scheduler = scheduler
        self.network = network
        self.nodes = nodes
        self.links: dict[str, dict[str, Link]] = {node_id: {} for node_id in nodes}
        self._ids = itertools.count(1)
        self.client_numbers = itertools.count(1)

    # --- paths ---------------------------------------------------------------------------

    def latency(self, region: str, node: SimNode) -> float:
        if region == node.region:
            return LOCAL_S
        return self.network.profiles[region, node.region].latency_s

    def longest_trip_s(self) -> float:
        """The longest one-way trip between a player and a node (what a message sent now to
        any player may still need to arrive)."""
        trips = [LOCAL_S, *(p.latency_s for p in self.network.profiles.values())]
        return max(trips)

    def path_open(self, region: str, node: SimNode) -> bool:
        return region == node.region or (
            self.network.is_open(region, node.region) and self.network.is_open(node.region, region)
        )

    def _unreachable_after(self, region: str, node: SimNode) -> float | None:
        """None if the node answers; else how long until the client learns it does not."""
        if node.up and self.path_open(region, node):
            return None
        if node.reachable and self.path_open(region, node):
            return 2 * self.latency(region, node)  # refused by the machine (RST)
        return CONNECT_TIMEOUT_S

    # --- HTTP ----------------------------------------------------------------------------

    def post(self, client: SimClient, node_id: str, path: str, body: Reply, done: Done) -> None:
        node = self.nodes[node_id]
        fails_after = self._unreachable_after(client.region, node)
        if fails_after is not None:
            reply = failure("unreachable", f"cannot reach {node_id}")
            self.scheduler.after(fails_after, done, reply)
            return
        one_way = self.latency(client.region, node)
        answer: Done = lambda reply: self.scheduler.after(one_way, done, reply)  # noqa: E731
        self.scheduler.after(
            one_way, self._serve_http, node, node.incarnation, client, path, body, answer
        )

    def _serve_http(
        self,
        node: SimNode,
        incarnation: int,
        client: SimClient,
        path: str,
        body: Reply,
        answer: Done,
    ) -> None:
        if not node.up or node.incarnation != incarnation:
            answer(failure("unreachable", f"{node.node_id} went down"))
            return
        flows = AccountFlow(
            node.service, lambda: known_regions(node.region, node.engine), STAND_IN_HASH
        )
        now = node.local_now()
        try:
            if path == "/api/register":
                flow = flows.register(decode_body(_raw(body), RegisterBody), client.address, now)
            elif path == "/api/login":
                flow = flows.login(decode_body(_raw(body), LoginBody), client.address, now)
                answer = _login_noted(node, client, answer)
            elif path == "/api/password":  # the session token rides in the body as "token"
                fields, token = _without_token(body)
                flow = flows.change_password(
                    token, decode_body(_raw(fields), PasswordBody), client.address, now
                )
            elif path == "/api/home":
                fields, token = _without_token(body)
                flow = flows.move_home(token, decode_body(_raw(fields), HomeBody))
            else:
                answer(failure("not_found", f"no route {path}"))
                return
        except Refused as refused:
            answer(_reply(answer_of(refused)))
            return
        self._step(node, incarnation, flow, None, answer)

    def _step(self, node: SimNode, incarnation: int, flow: Flow, value: Any, answer: Done) -> None:
        """Run the production account flow (``node.account_flow``) on the virtual clock."""
        if not node.up or node.incarnation != incarnation:
            answer(failure("unreachable", f"{node.node_id} went down"))
            return
        try:
            effect = flow.send(value)
        except StopIteration as done:
            node.deliver_output()
            answer(_reply(done.value))
            return
        except Refused as refused:
            node.deliver_output()
            answer(_reply(answer_of(refused)))
            return

        def go(result: Any) -> None:
            self._step(node, incarnation, flow, result, answer)

        if isinstance(effect, HashPassword):
            go(password_hash(effect.password))
        elif isinstance(effect, CheckPassword):
            go(password_matches(effect.password_hash, effect.password))
        elif isinstance(effect, RequestAccounts):
            node.request_sync(ACCOUNTS_DOC)
            go(None)
        else:
            self.scheduler.after(effect.seconds, self._waited, node, go)

    def _waited(self, node: SimNode, go: Callable[[Any], None]) -> None:
        node.deliver_output()  # what the flow's own process() said meanwhile
        go(node.local_now())

    # --- websockets: the client's side -----------------------------------------------------

    def connect(
        self, client: SimClient, node_id: str, opened: Callable[[Link | None], None]
    ) -> None:
        node = self.nodes[node_id]
        fails_after = self._unreachable_after(client.region, node)
        if fails_after is not None:
            self.scheduler.after(fails_after, opened, None)
            return
        # TCP and the upgrade: the node has the connection after 1.5 round trips, the client 2.
        one_way = self.latency(client.region, node)
        self.scheduler.after(3 * one_way, self._accept, client, node, node.incarnation, opened)

    def _accept(
        self,
        client: SimClient,
        node: SimNode,
        incarnation: int,
        opened: Callable[[Link | None], None],
    ) -> None:
        one_way = self.latency(client.region, node)
        if (
            not node.up
            or node.incarnation != incarnation
            or not self.path_open(client.region, node)
        ):
            self.scheduler.after(one_way, opened, None)
            return
        link = Link(f"p{next(self._ids)}", client, node, incarnation)
        self.links[node.node_id][link.conn_id] = link
        node.service.connect(link.conn_id, node.local_now(), client.address)
        self.scheduler.after(one_way, self._opened, link, opened)

    def _opened(self, link: Link, opened: Callable[[Link | None], None]) -> None:
        opened(link if link.server_open else None)

    def send(self, link: Link, text: str) -> None:
        if link.client_open:
            self.scheduler.after(
                self.latency(link.client.region, link.node), self._receive, link, text
            )

    def _receive(self, link: Link, text: str) -> None:
        if not self._live(link):
            return
        node = link.node
        node.service.receive(link.conn_id, text, node.local_now())
        node.process_now()

    def close(self, link: Link) -> None:
        """The client closes its websocket (it moves to another region, say)."""
        if link.client_open:
            link.client_open = False
            self.scheduler.after(self.latency(link.client.region, link.node), self._gone, link)

    def _gone(self, link: Link) -> None:
        if self._live(link):
            self._drop_server_side(link)

    def _live(self, link: Link) -> bool:
        node = link.node
        return link.server_open and node.up and node.incarnation == link.incarnation

    def _drop_server_side(self, link: Link) -> None:
        link.server_open = False
        self.links[link.node.node_id].pop(link.conn_id, None)
        node = link.node
        node.service.disconnect(link.conn_id, node.local_now())
        node.deliver_output()

    # --- the node's side: delivering what the service says (node.player_api.drain) ----------

    def service_output(self, node: SimNode) -> None:
        """Send what the service releases; called after every call into it and whenever the
        node's store commits or a peer acknowledges (either may open the push gate)."""
        if not node.up:
            return
        for item in node.service.take_outgoing(node.local_now()):
            link = self.links[node.node_id].get(item.conn)
            if link is not None:
                self._deliver(link, item)

    def _deliver(self, link: Link, item: Outgoing) -> None:
        one_way = self.latency(link.client.region, link.node)
        if isinstance(item, Close):
            link.server_open = False
            self.links[link.node.node_id].pop(link.conn_id, None)
            self.scheduler.after(one_way, link.client.closed, link, item.code, item.reason)
            return
        self.scheduler.after(
            one_way, link.client.deliver, link, item.text or encode_message(item.message)
        )

    # --- faults ------------------------------------------------------------------------------

    def node_down(self, node_id: str) -> None:
        """The process is gone: its connections die with it (no close frame)."""
        links, self.links[node_id] = self.links[node_id], {}
        for link in links.values():
            link.server_open = False
            self._cut_client_side(link)

    def path_cut(self, src: str, dst: str) -> None:
        """Connections between players in one region and a node in the other are cut."""
        for node_id, links in self.links.items():
            for link in list(links.values()):
                if {link.client.region, self.nodes[node_id].region} == {src, dst}:
                    self._drop_server_side(link)
                    self._cut_client_side(link)

    def _cut_client_side(self, link: Link) -> None:
        if link.client_open:
            link.client_open = False
            self.scheduler.after(0.0, link.client.closed, link, CLOSE_ABNORMAL, "connection lost")


class SimClient:
    """One player program (see module docstring); it implements ``node.botworld.PlayerSide``."""

    def __init__(self, net: PlayerNet, region: str) -> None:
        self.net = net
        self.region = region
        self.address = f"{region}-player-{next(net.client_numbers)}"  # for per-address limits
        self.node: str | None = None  # the node of the open connection
        self.on_push: Callable[[Reply], None] = lambda push: None
        self.on_closed: Callable[[int, str], None] = lambda code, reason: None
        self._link: Link | None = None
        self._waiting: dict[str, Done] = {}
        self._sent: dict[str, tuple[str, Link]] = {}  # request id -> its kind and connection
        self._ids = itertools.count(1)
        self._shown: dict[str, Reply] = {}  # game id -> the newest game push of this connection
        self._switching: dict[str, Link] = {}  # connections opened to follow a drain notice
        self._following = False  # from a drain notice until the move succeeded or failed
        self._held: list[tuple[str, Reply, Done]] = []  # requests made meanwhile
        self._watching = ""  # the game this program watches (asked again after a move)
        self._uid = ""

    def http(self, node: str, path: str, body: Reply, done: Done) -> None:
        self.net.post(self, node, path, body, done)

    def connect(self, node: str, hello: Reply, done: Done) -> None:
        """Open a websocket to ``node`` and say hello; ``done`` gets the hello's reply."""
        self.close()

        def opened(link: Link | None) -> None:
            if link is None:
                done(failure("unreachable", f"cannot reach {node}"))
                return
            self._link, self.node = link, node
            self._shown = {}
            self.request("hello", hello, lambda reply: done(self._said_hello(reply)))

        self.net.connect(self, node, opened)

    def request(self, kind: str, fields: Reply, done: Done) -> None:
        link = self._link
        if self._following and link is not None:  # for the new node, as in node.client
            self._held.append((kind, fields, done))
            return
        if link is None or not link.client_open:
            done(failure("disconnected", "the websocket is closed"))
            return
        request_id = f"r{next(self._ids)}"
        self._waiting[request_id] = done
        self._sent[request_id] = (kind, link)
        if kind in ("watch", "unwatch"):
            self._watching = str(fields.get("game", "")) if kind == "watch" else ""
        self.net.send(link, json.dumps({"id": request_id, "type": kind, **fields}))

    def _said_hello(self, reply: Reply) -> Reply:
        if reply.get("ok"):
            self._uid = str(reply.get("you", {}).get("uid", ""))
        return reply

    def close(self) -> None:
        if self._link is not None:
            self.net.close(self._link)
            self._forget("closed by the client")

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.client_open

    # --- from the network --------------------------------------------------------------------

    def deliver(self, link: Link, text: str) -> None:
        switching = self._switching.get(link.conn_id) is link  # (both are read while moving)
        if (link is not self._link and not switching) or not link.client_open:
            return
        message = _read_json(text)
        self._sent.pop(message.get("re") or "", None)
        waiter = self._waiting.pop(message.get("re") or "", None)
        if waiter is not None:
            waiter(message)
        elif "type" in message:
            if message["type"] == "game":
                self._shown[str(message.get("game"))] = message
            elif message["type"] == "drain":
                self._follow(link, message)
            self.on_push(message)

    # --- a drain notice (the node drains, or its rebalancer moves the player: sim.meta) ------

    def _follow(self, link: Link, notice: Reply) -> None:
        """Continue the session at the node the notice names with its resume token, as
        ``node.client.PlayerClient`` does: the old connection stays current until the new
        node said hello, and requests made meanwhile wait for it (`request`); if it refuses (or
        cannot be reached) the old one is closed and the program fails over as when a
        connection drops; a game it watched is asked for again on the new connection (a watch
        belongs to a connection), as the web page does. What the player was doing when told
        goes into the history (``moved``: its live games where it was to move, whether a move
        of its awaited its reply), for ``sim.metacheck``."""
        target = url_node(str(notice.get("url", "")))
        mid_turn = sorted(
            gid
            for gid, shown in self._shown.items()
            if shown.get("status") == "live" and shown.get("to_move") == shown.get("you")
        )
        awaiting = sorted(k for k, on in self._sent.values() if on is link and k == "move")
        live = sorted(g for g, shown in self._shown.items() if shown.get("status") == "live")
        self.note_on(
            link.node,
            "moved",
            uid=self._uid,
            to=target,
            live=live,
            mid_turn=mid_turn,
            awaiting=awaiting,
        )
        if target is None or target not in self.net.nodes:
            return
        self._following = True

        def opened(new: Link | None) -> None:
            if new is None:
                self._give_up_on(link)
                return
            request_id = f"r{next(self._ids)}"
            self._waiting[request_id] = lambda reply: self._moved(link, new, target, reply)
            self._sent[request_id] = ("hello", new)
            hello = {"id": request_id, "type": "hello", "resume": notice["resume"]}
            # The new connection is not current yet: its replies come through `_switching`.
            self._switching[new.conn_id] = new
            self.net.send(new, json.dumps(hello))

        self.net.connect(self, target, opened)

    def _moved(self, old: Link, new: Link, node: str, reply: Reply) -> None:
        self._switching.pop(new.conn_id, None)
        self._following = False
        if not reply.get("ok") or self._link is not old:
            self.net.close(new)
            if self._link is old:
                self._give_up_on(old)
            return
        for request_id, (_kind, on) in list(self._sent.items()):
            if on is old:  # asked of the node left behind: no answer will come
                self._sent.pop(request_id, None)
                waiter = self._waiting.pop(request_id, None)
                if waiter is not None:
                    waiter(failure("disconnected", "sent to a node left behind"))
        self._link, self.node, self._shown = new, node, {}
        self._said_hello(reply)
        held, self._held = self._held, []
        for kind, fields, done in held:
            self.request(kind, fields, done)
        if self._watching:  # a watch belongs to a connection: ask again, as the web page does
            self.request("watch", {"game": self._watching}, self._watching_again)

    def _watching_again(self, reply: Reply) -> None:
        """The watched game's view in the reply is its newest push to this program."""
        view = reply.get("game")
        if reply.get("ok") and isinstance(view, dict):
            self._shown[str(view.get("game"))] = view
            self.on_push(view)

    def _give_up_on(self, link: Link) -> None:
        """The move failed: the old connection is closed, as if it had dropped."""
        if self._link is link:
            self.net.close(link)
            self._forget("closed by the client after a failed move")
            self.on_closed(CLOSE_ABNORMAL, "could not follow a drain notice")

    def note_on(self, node: SimNode, kind: str, **fields: Any) -> None:
        history = node.history
        if history is not None:
            history.notes.append(
                {
                    "t": round(self.net.scheduler.now, 6),
                    "node": node.node_id,
                    "kind": kind,
                    "client": self.address,
                    **fields,
                }
            )

    def closed(self, link: Link, code: int, reason: str) -> None:
        if self._switching.get(link.conn_id) is link:  # the node followed to went away
            link.client_open = False
            for request_id, (_kind, on) in list(self._sent.items()):
                waiter = self._waiting.pop(request_id, None) if on is link else None
                if waiter is not None:
                    waiter(failure("disconnected", f"closed with {code}"))
            return
        if link is not self._link:
            return
        link.client_open = False
        if self._switching:
            # The old node closes this connection (4104) as soon as the session continues on the
            # new one, which may be before the new node's hello reply (a failover's hello waits
            # for the catch-up): the move's outcome decides (`_moved`), in node.client too.
            return
        self._forget(f"closed with {code}")
        self.on_closed(code, reason)

    def _forget(self, why: str) -> None:
        self._link, self.node, self._following = None, None, False
        self._sent, self._shown = {}, {}
        waiting, self._waiting = self._waiting, {}
        held, self._held = self._held, []
        for done in [*waiting.values(), *(done for _kind, _fields, done in held)]:
            done(failure("disconnected", why))


def _login_noted(node: SimNode, client: SimClient, answer: Done) -> Done:
    """`answer`, after a ``login`` note of what the node knew of the account as it answered:
    the session it counted then (``knew``), which the login's must outrank (``one-session``,
    ``sim.presencecheck``)."""

    def noted(reply: Reply) -> None:
        if reply.get("ok"):
            uid = str(reply.get("uid", ""))
            new = node.service.session_by_token(str(reply.get("token", "")))
            sid = new.sid if new is not None else ""
            known = [s for s in node.service.all_sessions() if s.uid == uid and s.sid != sid]
            knew, started = (known[0].sid, known[0].started) if known else ("", "")
            client.note_on(
                node,
                "login",
                uid=uid,
                sid=sid,
                knew=knew,
                knew_started=started,
                incarnation=node.incarnation,
            )
        answer(reply)

    return noted


def _without_token(body: Reply) -> tuple[Reply, str]:
    """A simulated client sends its session token (production: the Authorization header) in
    the body; the account flow takes it apart from the body's own fields."""
    fields = {k: v for k, v in body.items() if k != "token"}
    token = body.get("token")
    return fields, token if isinstance(token, str) else ""


def _raw(body: Reply) -> bytes:
    return json.dumps(body).encode()


def _reply(answer: HttpAnswer) -> Reply:
    """An HTTP answer as the simulated clients read it ({"ok": ...} and the body)."""
    if answer.status < 400:
        return {"ok": True, **answer.body}
    return {"ok": False, **answer.body}
