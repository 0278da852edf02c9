"""The house rules a reader relies on, checked: modules of at most 400 lines,
functions of at most 40 (unless docs/internals.md names them, with why), and
no import cycle inside the package (imports in functions count too; only
`if TYPE_CHECKING:` imports are left out, as they never run).

    python tools/layout.py        # prints each breach; exit 1 if any
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "compiler"
MODULE_LINES = 400
FUNCTION_LINES = 40


def module_name(path: Path) -> str:
    parts = ["mailpubc", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def allowed_long_functions() -> set[str]:
    """`module.function` names the internals document lists under "Long functions"."""
    text = (ROOT / "docs" / "internals.md").read_text()
    section = text.partition("\n## Long functions")[2].split("\n## ")[0]
    return set(re.findall(r"`(mailpubc[\w.]+)`", section))


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("mailpubc"):
                if node.module:         # `from . import x` imports x, not the package
                    found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("mailpubc"))
        stack.extend(ast.iter_child_nodes(node))
    return found


def breaches() -> list[str]:
    allowed = allowed_long_functions()
    found: list[str] = []
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = module_name(path)
        lines = text.count("\n")
        if lines > MODULE_LINES:
            found.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MODULE_LINES})")
        tree = ast.parse(text)
        graph[name] = imported_modules(tree, name, path.name == "__init__.py")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES and f"{name}.{node.name}" not in allowed:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}: "
                                 f"{length} lines (at most {FUNCTION_LINES})")
    found.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan's algorithm)."""
    edges = {name: sorted(t for t in targets if t in graph and t != name)
             for name, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in edges[name]:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                groups.append(sorted(group) + [sorted(group)[0]])

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return groups


if __name__ == "__main__":
    problems = breaches()
    print("\n".join(problems) or "layout: every module, function and import is within the rules")
    sys.exit(1 if problems else 0)
