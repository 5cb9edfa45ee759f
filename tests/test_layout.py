"""The house rules of the layout (issue 23), checked on the code itself: no
import circle in the package, however an import is written (at the top, in a
function, under TYPE_CHECKING), and no module much over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "asteps"
MAX_LINES = 450
"""About 400: a module past this one holds more than one job."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """The asteps modules ``path`` imports (a package counts as its __init__)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("asteps"))
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("asteps"):
                continue
            found.add(target)
            # "from . import _telemetry" imports the module _telemetry.
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {name: imports_of(path) & modules.keys() for name, path in modules.items()}
    # A package's __init__ re-exports; an arrow to a module is not one to its package.
    return {name: {t for t in targets if t != name} for name, targets in edges.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            if not target.startswith(node + "."):  # a package importing its own modules
                visit(target, [*path, node])
        done.add(node)

    for name in sorted(edges):
        visit(name, [])
    return found


def test_the_package_has_no_import_circle() -> None:
    # The top-level asteps/__init__ only re-exports, and nothing inside the
    # package imports it: leaving it out keeps its arrows from drawing circles.
    edges = {name: targets - {"asteps"} for name, targets in graph().items() if name != "asteps"}
    assert circles(edges) == []


def test_no_module_is_much_over_400_lines() -> None:
    long = {
        module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
