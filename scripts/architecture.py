"""Draw cds_service's architecture from its imports and check that dependencies point down.

    python scripts/architecture.py            # (re)write docs/architecture.md  (make architecture)
    python scripts/architecture.py --check    # exit 1 when docs/architecture.md is out of date

Every module under `cds_service/` is parsed with `ast`; each `import` and `from … import` of
`cds_service` counts, wherever it stands (module level or inside a function), except those under
`if TYPE_CHECKING:` (they never run, and exist to name types). A module belongs to a *component*:
its top-level package (`rules`, `api`, …) or, for a module directly under `cds_service/`, the
module itself (`config`, `state`, …). `LAYERS` below puts each component in a layer; a component
may import its own layer and the layers below, never one above, and components may not import each
other in a cycle. `tests/test_architecture.py` enforces both and that the committed document is
what this script writes.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cds_service"
DOCUMENT = ROOT / "docs" / "architecture.md"

#: The layers, bottom first: (name, what it holds, its components).
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "foundation",
        "shared types, errors, settings, validation messages and 'did you mean', YAML with "
        "positions, JSON within a nesting limit, the FHIR JSON scans every call makes, the "
        "FHIR client's HTTP/1.1 transport, the database, our URLs, metrics, logs, tracing, heap "
        "tuning, plugin loading",
        (
            "__init__",
            "types",
            "exceptions",
            "validation",
            "suggest",
            "issues",
            "clock",
            "patient",
            "config",
            "yamlsource",
            "jsondepth",
            "_jsondepth",
            "fhirscan",
            "_fhirscan",
            "http11",
            "database",
            "urls",
            "metrics",
            "logs",
            "tracing",
            "heap",
            "plugins",
        ),
    ),
    ("wire", "the CDS Hooks JSON models", ("wire",)),
    (
        "terminology",
        "the value sets every layer above reads codes from, and the FHIR server double",
        ("terminology", "fhir_double"),
    ),
    (
        "building blocks",
        "prefetch (templates, fetching), risk scores and their cache, Bulk Data export, tenants "
        "and JWT verification",
        ("prefetch", "bulk", "scores", "security"),
    ),
    ("services", "what a CDS service is, the registry, the built-in services", ("services",)),
    ("rules", "the YAML rule engine, its tests and tools", ("rules",)),
    (
        "population",
        "whole populations through the services: card rates and errors before go-live",
        ("population",),
    ),
    ("records", "the feedback store and the audit trail", ("feedback", "audit")),
    (
        "app",
        "what one app holds (state), what its lifespan opens (resources), the shared FastAPI "
        "dependencies",
        ("state", "resources", "deps"),
    ),
    (
        "web",
        "the CDS Hooks routes, the SMART app, the rule workbench, the OpenAPI document",
        ("api", "smart", "workbench", "openapi"),
    ),
    (
        "entry points",
        "the app factory, the command line, the worker supervisor",
        ("main", "cli", "supervisor", "__main__"),
    ),
)


@dataclass(frozen=True, slots=True, order=True)
class Import:
    """One import of a `cds_service` module by another."""

    importer: str  # dotted module name
    line: int
    imported: str  # dotted module name


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def component(module: str) -> str:
    """`cds_service.rules.engine` → `rules`; `cds_service.config` → `config`;
    `cds_service` → `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below `node`, except the bodies of `if TYPE_CHECKING:` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for orelse in child.orelse:
                yield orelse
                yield from _walk(orelse)
            continue
        yield child
        yield from _walk(child)


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    """The `cds_service` modules `module` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    found.append(Import(module, node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            if source != PACKAGE and not source.startswith(PACKAGE + "."):
                continue
            for alias in node.names:
                # `from cds_service.api import hooks` imports the module cds_service.api.hooks.
                submodule = f"{source}.{alias.name}"
                found.append(
                    Import(module, node.lineno, submodule if submodule in known else source)
                )
    return found


def all_imports(root: Path = ROOT) -> list[Import]:
    found = modules(root)
    known = set(found)
    return sorted(i for name, path in found.items() for i in imports_of(name, path, known))


def layer_of() -> dict[str, int]:
    """Component → layer index (0 = bottom)."""
    return {c: index for index, (_, _, components) in enumerate(LAYERS) for c in components}


def dependencies(imports: list[Import]) -> dict[str, set[str]]:
    """Component → the other components it imports."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        source, target = component(i.importer), component(i.imported)
        graph.setdefault(source, set())
        graph.setdefault(target, set())
        if source != target:
            graph[source].add(target)
    return graph


def unplaced(root: Path = ROOT) -> list[str]:
    """Components that no layer names (every one must have a place)."""
    present = {component(m) for m in modules(root)}
    return sorted(present - set(layer_of()))


def upward(imports: list[Import]) -> list[Import]:
    """Imports of a component in a higher layer than the importer's."""
    layers = layer_of()
    return [
        i
        for i in imports
        if layers.get(component(i.imported), -1) > layers.get(component(i.importer), -1)
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of components that import each other in a cycle (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def reduced(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph without the edges another path implies (for an acyclic graph: the fewest edges
    with the same reachability), so the diagram stays readable."""

    def reachable(start: str, skip: str) -> set[str]:
        seen: set[str] = set()
        todo = [t for t in graph[start] if t != skip]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(graph[node])
        return seen

    return {
        source: {t for t in targets if t not in reachable(source, t)}
        for source, targets in graph.items()
    }


def _node_id(name: str) -> str:
    return f"c_{name}"


def render(imports: list[Import]) -> str:
    """docs/architecture.md."""
    graph = dependencies(imports)
    layers = layer_of()
    lines = [
        "<!-- Generated by scripts/architecture.py (make architecture): do not edit by hand. -->",
        "",
        "# Architecture",
        "",
        "How the packages and top-level modules of `cds_service` depend on each other, drawn from",
        "their imports (with `ast`: module-level and function-local imports count, those under",
        "`if TYPE_CHECKING:` do not). Each component (a package, or a module directly under",
        "`cds_service/`) sits in a layer; it may import its own layer and the layers below it,",
        "never a layer above, and no components import each other in a cycle.",
        "`tests/test_architecture.py` checks both, and that this file is current.",
        "",
        "## Layers, top first",
        "",
        "| layer | components | what it holds |",
        "|---|---|---|",
    ]
    for name, about, components in reversed(LAYERS):
        listed = ", ".join(f"`{c}`" for c in components)
        lines.append(f"| {name} | {listed} | {about} |")
    lines += [
        "",
        "## Imports between components",
        "",
        "An arrow points from the importer to what it imports. An arrow that other arrows imply",
        "is left out of the diagram (a → c is not drawn when a → b → c is); the table below",
        "lists every component's direct imports.",
        "",
        "```mermaid",
        "flowchart TB",
    ]
    for index in reversed(range(len(LAYERS))):
        name, _, components = LAYERS[index]
        lines.append(f'    subgraph L{index}["{name}"]')
        for c in components:
            lines.append(f'        {_node_id(c)}["{c}"]')
        lines.append("    end")
    drawn = reduced(graph)
    for source in sorted(drawn, key=lambda c: (-layers.get(c, -1), c)):
        for target in sorted(drawn[source], key=lambda c: (-layers.get(c, -1), c)):
            lines.append(f"    {_node_id(source)} --> {_node_id(target)}")
    lines += [
        "```",
        "",
        "| component | layer | imports |",
        "|---|---|---|",
    ]
    for index in reversed(range(len(LAYERS))):
        name, _, components = LAYERS[index]
        for c in components:
            targets = sorted(graph.get(c, ()), key=lambda t: (-layers.get(t, -1), t))
            listed = ", ".join(f"`{t}`" for t in targets) or "—"
            lines.append(f"| `{c}` | {name} | {listed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/architecture.md from the imports.")
    parser.add_argument("--check", action="store_true", help="fail if the document is stale")
    args = parser.parse_args(argv)
    imports = all_imports()
    text = render(imports)
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT.relative_to(ROOT)} is out of date: run `make architecture`")
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    for problem in unplaced():
        print(f"warning: component {problem} is in no layer", file=sys.stderr)
    for i in upward(imports):
        print(
            f"warning: {i.importer}:{i.line} imports {i.imported} (a higher layer)", file=sys.stderr
        )
    for group in cycles(dependencies(imports)):
        print(f"warning: import cycle between {', '.join(group)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
