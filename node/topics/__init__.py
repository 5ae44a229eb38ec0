"""The game service's topics; each imports only ``node.service_state`` and ``node.protocol``
(and the read models below them), never another topic. ``node.service`` ties them together."""
