"""The package's dependency rules, read from the import statements of every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neurolake"
REPO = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # "from neurolake.mining import lcm" imports the module neurolake.mining.lcm
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _top(name: str) -> str:
    return name.split(".")[0]


def _subpackage(module: str) -> str:
    """``neurolake.store.run`` -> ``store``; a top-level module -> its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _internal(imported: set[str]) -> set[str]:
    return {m for m in imported if m in MODULES}


def test_the_modules_are_found():
    assert {"neurolake.store.run", "neurolake.cluster.pool", "neurolake.mining.lcm", "neurolake.labels.ctc"} <= set(
        MODULES
    )


def test_only_cluster_imports_ray():
    offenders = sorted(
        m
        for m, imported in MODULES.items()
        if any(_top(i) == "ray" for i in imported) and not m.startswith("neurolake.cluster")
    )
    assert offenders == [], offenders


ALGORITHMS = [
    m
    for m in MODULES
    if m.startswith("neurolake.labels")
    or m in ("neurolake.mining.lcm", "neurolake.mining.diffnorm", "neurolake.mining.binarize")
    or m.startswith("neurolake.mining._")
    or m == "neurolake.mining.significance"
]


@pytest.mark.parametrize("module", ALGORITHMS)
def test_algorithms_import_neither_ray_nor_the_store(module):
    bad = sorted(i for i in MODULES[module] if _top(i) == "ray" or i.startswith("neurolake.store"))
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("neurolake.store")])
def test_store_imports_no_other_neurolake_package(module):
    allowed = ("neurolake.store", "neurolake.errors", "neurolake.schemas")
    bad = sorted(i for i in _internal(MODULES[module]) if not i.startswith(allowed) and i != "neurolake")
    assert bad == [], f"{module} imports {bad}"


def test_no_import_cycles_between_modules():
    graph = nx.DiGraph()
    for module, imported in MODULES.items():
        graph.add_node(module)
        for target in _internal(imported):
            # a package's __init__ re-exporting its own modules is not a cycle of concerns
            if target != module and not module.startswith(target + ".") and not target.startswith(module + "."):
                graph.add_edge(module, target)
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], cycles[:5]


def test_no_docstring_cites_a_document_outside_the_repository():
    cited = re.compile(r"\b(DESIGN|MINING|INTROSPECTION|STYLE)(\.md)?\s*§")
    hits = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if cited.search(line)
    ]
    assert hits == []
