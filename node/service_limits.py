"""The configurable limits of the game service (the ``[limits]`` table; docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceLimits:
    """The per-address and per-account limits a node enforces (the ``[limits]`` table of the
    config; docs/configuration.md). The others are constants of ``node.topics.limits``."""

    connections_per_address: int = 256
    connections_per_account: int = 8
    registrations_per_address_per_hour: int = 60
