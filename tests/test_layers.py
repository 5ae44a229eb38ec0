"""The layers import one way only: games <- crdt_models <- sync <- node <- sim <- cli.

Read from the source with `ast` (no import side effects): every ``import meridian.X`` or
``from meridian.X import`` in a layer's files must name that layer or one below it, and no
file may import a layer by its bare folder name (``import node``), which would load a second
copy of a module outside the ``meridian`` namespace.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["games", "crdt_models", "sync", "node", "sim"]
BARE = {*LAYERS}


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "meridian" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_itself_and_the_layers_below(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / layer).rglob("*.py"))
        for module in imported_modules(path)
        if (target := layer_of(module)) is not None and target not in allowed
    ]
    assert not wrong, f"{layer} may import only {sorted(allowed)}; found:\n" + "\n".join(wrong)


def test_no_code_imports_a_layer_by_its_bare_folder_name() -> None:
    files = [p for folder in [*LAYERS, "tests", "bench"] for p in (ROOT / folder).rglob("*.py")]
    files += (ROOT / "meridian").glob("*.py")  # not below: meridian/<layer> links to the layers
    bare = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted(files)
        for module in imported_modules(path)
        if module.split(".")[0] in BARE
    ]
    assert not bare, "import through meridian.<layer>:\n" + "\n".join(bare)


def test_the_planted_upward_import_is_found(tmp_path: Path) -> None:
    """The checker itself: a sync module importing the node layer is reported."""
    planted = tmp_path / "planted.py"
    planted.write_text("from meridian.node.config import NodeConfig\nimport meridian.sync.codec\n")
    layers = [layer_of(m) for m in imported_modules(planted)]
    assert layers == ["node", "sync"]
    assert "node" not in set(LAYERS[: LAYERS.index("sync") + 1])


def test_the_generic_helpers_beside_the_layers_import_no_layer() -> None:
    """``meridian/tomlschema.py`` is used by node and sim alike: it must stay below both."""
    wrong = [m for m in imported_modules(ROOT / "meridian" / "tomlschema.py") if layer_of(m)]
    assert not wrong, f"meridian/tomlschema.py imports {wrong}"


# The simulator runs the production adapters' sans-IO cores, never copies of them: each
# simulated part named here must import the production piece it stands in for.
SHARED_CORES = {
    "sim/node.py": ["meridian.node.service_host", "meridian.sync.replicator"],
    "sim/disk.py": ["meridian.sync.store"],
    "sim/players.py": ["meridian.node.account_flow", "meridian.node.protocol"],
    "sim/bots.py": ["meridian.node.botbrain"],
}
COPY_WORDS = ("mirrors", "as node.", "copy of node.", "same as node.")


@pytest.mark.parametrize("path", sorted(SHARED_CORES))
def test_the_simulator_runs_the_production_core_it_stands_in_for(path: str) -> None:
    imported = set(imported_modules(ROOT / path))
    missing = [module for module in SHARED_CORES[path] if module not in imported]
    assert not missing, f"{path} no longer imports {missing}: does it keep its own copy?"


def test_no_simulator_module_says_it_copies_a_production_adapter() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {word!r}"
        for path in sorted((ROOT / "sim").glob("*.py"))
        for word in COPY_WORDS
        if word in path.read_text().lower()
    ]
    assert not found, "the simulator should call the production code, not copy it:\n" + "\n".join(
        found
    )
