"""The game service's shape: topics never import each other, and no module grows too large."""

from __future__ import annotations

import ast
from pathlib import Path

NODE = Path(__file__).resolve().parent.parent / "node"
TOPICS = NODE / "topics"
SERVICE_MODULES = [
    NODE / "service.py",
    NODE / "service_state.py",
    NODE / "service_handlers.py",
    NODE / "service_meta.py",
    NODE / "protocol.py",
    NODE / "refusals.py",
    NODE / "rollback_notices.py",
    NODE / "placement_hooks.py",
    *TOPICS.glob("*.py"),
]
MAX_LINES = 400
# What a topic may import from meridian.node: the shared state, the protocol, and the read
# models and gate below them.
ALLOWED_FOR_TOPICS = {
    "meridian.node.service_state",
    "meridian.node.protocol",
    "meridian.node.refusals",
    "meridian.node.service_limits",
    "meridian.node.game_tracker",
    "meridian.node.presence_view",
    "meridian.node.delivery",
    "meridian.node.rollback_notices",  # the games topic's memory of who was shown what
    "meridian.node.placement_hooks",  # the games topic's view of partial replication
}


def _node_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "meridian.node":
                found.update(f"meridian.node.{alias.name}" for alias in node.names)
            elif node.module.startswith("meridian.node"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("meridian.node"))
    return found


def test_topics_import_the_shared_state_and_the_protocol_never_each_other() -> None:
    topics = [t for t in TOPICS.glob("*.py") if t.name != "__init__.py"]
    assert len(topics) >= 6
    for topic in topics:
        wrong = _node_imports(topic) - ALLOWED_FOR_TOPICS
        assert not wrong, f"{topic.name} imports {sorted(wrong)}"


def test_the_shared_state_imports_no_topic_and_no_facade() -> None:
    imports = _node_imports(NODE / "service_state.py")
    assert not any(i.startswith("meridian.node.topics") for i in imports)
    assert "meridian.node.service" not in imports


def test_no_service_module_is_over_400_lines() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in SERVICE_MODULES}
    assert all(size <= MAX_LINES for size in sizes.values()), sizes
