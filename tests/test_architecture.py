"""Dependencies point down: the layers of scripts/architecture.py hold, and docs/architecture.md
is what the script writes."""

from __future__ import annotations

import ast
from pathlib import Path

from scripts import architecture
from scripts.architecture import Import

ROOT = Path(__file__).resolve().parents[1]

# Upward imports tolerated for now, as (importer module, imported module), each with its reason
# and who removes it. None are left: keep it that way rather than adding to it.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def test_every_component_has_a_layer() -> None:
    assert architecture.unplaced() == [], "add the new package or module to LAYERS"


def test_no_layer_imports_a_layer_above_it() -> None:
    found = [
        f"{i.importer}:{i.line} imports {i.imported}"
        for i in architecture.upward(architecture.all_imports())
        if (i.importer, i.imported) not in ALLOWED_UPWARD
    ]
    assert found == []


def test_the_allowed_upward_imports_still_exist() -> None:
    present = {(i.importer, i.imported) for i in architecture.upward(architecture.all_imports())}
    assert present >= ALLOWED_UPWARD, "drop the allowances that are no longer needed"


def test_no_import_cycles_between_components() -> None:
    assert architecture.cycles(architecture.dependencies(architecture.all_imports())) == []


def test_the_document_is_current() -> None:
    expected = architecture.render(architecture.all_imports())
    assert (ROOT / "docs" / "architecture.md").read_text() == expected, (
        "docs/architecture.md is out of date: run `make architecture`"
    )


def test_deploy_does_not_import_bench() -> None:
    for path in sorted((ROOT / "deploy").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.split(".")[0] == "bench"], path.name


def write(root: Path, module: str, source: str) -> None:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_the_checks_see_local_imports_and_cycles_but_not_type_checking(tmp_path: Path) -> None:
    write(tmp_path, "cds_service.__init__", "")
    write(tmp_path, "cds_service.wire.__init__", "")
    write(
        tmp_path,
        "cds_service.wire.base",
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from cds_service.api import deps\n"
        "def f() -> None:\n"
        "    from cds_service.rules import engine\n",
    )
    write(tmp_path, "cds_service.rules.__init__", "from . import engine\n")
    write(tmp_path, "cds_service.rules.engine", "import cds_service.services.registry\n")
    write(tmp_path, "cds_service.services.registry", "from cds_service.rules.engine import x\n")
    write(tmp_path, "cds_service.api.deps", "")
    write(tmp_path, "cds_service.newthing", "")
    imports = architecture.all_imports(tmp_path)
    assert Import("cds_service.wire.base", 5, "cds_service.rules.engine") in imports
    assert not [i for i in imports if i.imported == "cds_service.api.deps"]
    assert Import("cds_service.rules", 1, "cds_service.rules.engine") in imports
    assert architecture.upward(imports) == [
        Import("cds_service.services.registry", 1, "cds_service.rules.engine"),
        Import("cds_service.wire.base", 5, "cds_service.rules.engine"),
    ]
    assert architecture.cycles(architecture.dependencies(imports)) == [["rules", "services"]]
    assert architecture.unplaced(tmp_path) == ["newthing"]
