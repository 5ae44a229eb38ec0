"""Zeroconf (mDNS / DNS-SD) discovery of Meridian nodes inside one network.

Each node announces a ``_meridian._tcp.local.`` service whose TXT record carries ``node``
(node id), ``region``, ``proto`` (peer protocol version) and ``url`` (the node's public URL),
and browses for the same service type. Every other node it hears about is reported through
``on_found``; the caller decides whether to dial it (static seeds from the config work across
regions, zeroconf only within one multicast domain).

Discovery never decides liveness. mDNS records outlive a killed node by minutes (their TTL),
and a goodbye packet is only sent on a clean shutdown, so "still announced" says nothing about
"still alive". The peer link's heartbeat and timeout are the only judges of liveness; this
module only says "a node with this id claims to be reachable at this URL".

This is an I/O adapter over python-zeroconf's asyncio API; it owns its AsyncZeroconf.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from zeroconf import InterfaceChoice, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

SERVICE_TYPE = "_meridian._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
_NAME_PATTERN = re.compile(r"[a-z0-9-]{1,32}")
_MAX_TXT_VALUE_BYTES = 200  # a TXT string holds 255 bytes including "key="

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveredPeer:
    """A node announced on the local network: who it says it is and where it says it listens."""

    node_id: str
    region: str
    proto: str
    url: str

    def txt_properties(self) -> dict[str, str]:
        return {"node": self.node_id, "region": self.region, "proto": self.proto, "url": self.url}


def validate_peer(peer: DiscoveredPeer) -> DiscoveredPeer:
    """Return ``peer`` if every field is well formed; ValueError naming the bad field otherwise."""
    for field_name, value in (("node", peer.node_id), ("region", peer.region)):
        if not _NAME_PATTERN.fullmatch(value):
            raise ValueError(f"{field_name}={value!r}: expected 1-32 characters from a-z, 0-9, '-'")
    if not peer.proto or len(peer.proto.encode()) > 32 or not peer.proto.isprintable():
        raise ValueError(f"proto={peer.proto!r}: expected a short printable version string")
    url = urlsplit(peer.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"url={peer.url!r}: expected an http:// or https:// URL with a host")
    if len(peer.url.encode()) > _MAX_TXT_VALUE_BYTES:
        raise ValueError(f"url={peer.url[:40]!r}...: longer than {_MAX_TXT_VALUE_BYTES} bytes")
    return peer


def peer_from_txt(properties: Mapping[bytes, bytes | None]) -> DiscoveredPeer:
    """Parse a TXT record; ValueError naming what is missing or malformed."""
    values: dict[str, str] = {}
    for key in ("node", "region", "proto", "url"):
        raw = properties.get(key.encode())
        if raw is None:
            raise ValueError(f"TXT key {key!r} is missing or has no value")
        try:
            values[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"TXT key {key!r} is not UTF-8") from None
    peer = DiscoveredPeer(values["node"], values["region"], values["proto"], values["url"])
    return validate_peer(peer)


class ZeroconfDiscovery:
    """Announce this node and report every other Meridian node found on the local network.

    ``on_found`` runs on the event loop for each newly seen node and again when a node's
    announcement changes (e.g. a new URL after a restart); never for this node's own id.
    It is a hint to dial, not a liveness signal: see the module docstring.
    """

    def __init__(
        self,
        *,
        node_id: str,
        region: str,
        proto: str,
        url: str,
        port: int,
        on_found: Callable[[DiscoveredPeer], None],
        interfaces: list[str] | None = None,
    ) -> None:
        self._me = validate_peer(DiscoveredPeer(node_id, region, proto, url))
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be 1..65535, got {port}")
        self._port = port
        self._on_found = on_found
        self._interfaces = interfaces
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        self._reported: dict[str, DiscoveredPeer] = {}  # service name -> last reported
        self._own_service_name = ""

    async def start(self) -> None:
        """Announce this node (waits for mDNS probing, about 1-2 s), then browse."""
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self._me.node_id}.{SERVICE_TYPE}",
            port=self._port,
            properties=self._me.txt_properties(),
            parsed_addresses=await self._announced_addresses(),
        )
        interfaces = self._interfaces if self._interfaces is not None else InterfaceChoice.All
        self._zeroconf = AsyncZeroconf(interfaces=interfaces)
        try:
            # A name clash (two nodes configured with one id) gets a renamed instance rather
            # than a crash; the TXT record still carries the real node id.
            await self._zeroconf.async_register_service(info, allow_name_change=True)
        except BaseException:
            await self.close()
            raise
        self._own_service_name = info.name
        self._browser = AsyncServiceBrowser(
            self._zeroconf.zeroconf, SERVICE_TYPE, handlers=[self._on_service_state_change]
        )

    async def close(self) -> None:
        """Stop browsing, send goodbye packets for our announcement and release the sockets."""
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        for task in self._resolving:
            task.cancel()
        await asyncio.gather(*self._resolving, return_exceptions=True)
        if self._zeroconf is not None:
            await self._zeroconf.async_close()  # unregisters every service we announced
            self._zeroconf = None

    async def _announced_addresses(self) -> list[str]:
        """Addresses for the A/AAAA records: DNS-SD needs some, though peers dial the TXT url.

        The url's host if it is an IP, else the given interfaces, else the url's host resolved.
        """
        host = urlsplit(self._me.url).hostname or ""
        candidates = [host, *(self._interfaces or [])]
        addresses = [text for text in dict.fromkeys(candidates) if _is_specific_ip(text)]
        if addresses:
            return addresses
        try:
            resolved = await asyncio.get_running_loop().getaddrinfo(host, self._port)
        except OSError as error:
            raise ValueError(
                f"zeroconf: cannot resolve the url host {host!r} ({error}); "
                "pass interfaces=[<this node's IP>]"
            ) from None
        return list(dict.fromkeys(str(entry[4][0]) for entry in resolved))

    def _on_service_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            # Forget it so a re-announcement is reported again; never treat it as "dead".
            self._reported.pop(name, None)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, name))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, zeroconf: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("zeroconf: %s did not answer within %d ms", name, RESOLVE_TIMEOUT_MS)
            return
        try:
            peer = peer_from_txt(info.properties)
        except ValueError as error:
            log.warning("zeroconf: ignoring %s: malformed TXT record: %s", name, error)
            return
        if peer.node_id == self._me.node_id:
            if name != self._own_service_name:
                log.warning("zeroconf: %s announces this node's own id %s", name, peer.node_id)
            return
        if self._reported.get(name) == peer:
            return
        self._reported[name] = peer
        try:
            self._on_found(peer)
        except Exception:
            # A failing callback must not stop discovery of the next node.
            log.exception("zeroconf: on_found failed for %s", peer)


def _is_specific_ip(text: str) -> bool:
    try:
        return not ipaddress.ip_address(text).is_unspecified
    except ValueError:
        return False
