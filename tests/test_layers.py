"""Every arrow points down: a module of charrnn imports only modules on its own floor or below (FLOORS), and
no modules import each other, directly or round a circle.

An import counts wherever it is written, in a function too (it runs when the function does), except under
`if TYPE_CHECKING:` (it never runs) and `if __name__ == "__main__":` (the module run as a script is the
command, on top of everything).
"""

import ast
from pathlib import Path

from tests.conftest import REPO

# Bottom first. A module's floor is its longest prefix's here.
FLOORS = [
    # what everything stands on: one job each, no charrnn below them but each other
    ("errors", "files", "ranges", "cells", "terminal", "signals", "threads", "devices", "commandline"),
    ("model", "optim", "data", "novelty", "distributed"),
    ("backends", "generation"),
    ("config",),
    ("checkpoint", "monitor"),
    ("gradcheck", "explore"),
    ("training",),
    ("cli",),
    # the commands and the public API
    ("start", "sampling", "api", "board", "gradcheck.cli", "gradcheck.__init__", "tools", "__init__"),
]
# A package's __main__ (python -m charrnn.explore) is a command wherever it lives: on the top floor.


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, "pkg.__init__" for a package's own file."""
    return {".".join((package, *path.relative_to(root).with_suffix("").parts)): path for path in root.rglob("*.py")}


def _skipped(node: ast.If) -> bool:
    test = ast.unparse(node.test)
    return test in ("TYPE_CHECKING", "typing.TYPE_CHECKING") or test.replace("'", '"') == '__name__ == "__main__"'


def _imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _skipped(node):
            yield from (found for child in node.orelse for found in _imports(ast.Module([child], [])))
            continue
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield from ((node.module, alias.name) for alias in node.names)
        yield from _imports(node)


def imports(names: dict[str, Path], package: str) -> dict[str, set[str]]:
    """Each module's imports of the package's modules ("from pkg import sub" is pkg.sub)."""
    def resolve(dotted: str) -> str | None:
        while dotted:
            if dotted in names or dotted + ".__init__" in names:
                return dotted if dotted in names else dotted + ".__init__"
            dotted = dotted.rpartition(".")[0]
        return None

    edges = {}
    for name, path in names.items():
        found = set()
        for module, attribute in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module == package or module.startswith(package + "."):
                target = resolve(f"{module}.{attribute}" if attribute else module)
                if attribute and target in (module, module + ".__init__"):
                    target = resolve(module)
                if target and target != name:
                    found.add(target)
        edges[name] = found
    return edges


def floor(name: str, package: str) -> int:
    if name.endswith(".__main__"):
        return len(FLOORS) - 1
    inner = name.removeprefix(package + ".")
    best, level = -1, None
    for number, rooms in enumerate(FLOORS):
        for room in rooms:
            if (inner == room or inner.startswith(room + ".")) and len(room) > best:
                best, level = len(room), number
    assert level is not None, f"{name} stands on no floor: add it to FLOORS"
    return level


def upward(edges: dict[str, set[str]], package: str) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                  if floor(b, package) > floor(a, package))


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_import_points_down_and_none_closes_a_circle():
    names = modules(REPO / "charrnn", "charrnn")
    edges = imports(names, "charrnn")
    assert len(names) > 80 and sum(map(len, edges.values())) > 200     # it did read the package
    assert upward(edges, "charrnn") == []
    assert circles(edges) == []


def test_the_check_finds_an_upward_import_and_a_circle(tmp_path):
    """A package of three floors' modules: cli (floor 7) imported by model (1), and config and checkpoint
    importing each other (one inside a function, one in a from-import of the module)."""
    root = tmp_path / "charrnn"
    (root / "checkpoint").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "cli.py").write_text("")
    (root / "model.py").write_text("def f():\n    from charrnn.cli import main\n")
    (root / "config.py").write_text("from charrnn import checkpoint\n")
    (root / "checkpoint" / "__init__.py").write_text("from charrnn.config import x\n")
    (root / "errors.py").write_text("if __name__ == '__main__':\n    import charrnn.cli\n")
    edges = imports(modules(root, "charrnn"), "charrnn")
    assert upward(edges, "charrnn") == ["charrnn.config -> charrnn.checkpoint.__init__",
                                        "charrnn.model -> charrnn.cli"]
    assert circles(edges) == [["charrnn.checkpoint.__init__", "charrnn.config"]]
