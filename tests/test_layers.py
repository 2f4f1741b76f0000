"""The import layers, pinned: imports point inward, toward the contract.

Every module of the four packages is parsed (no import is executed) and each import of one of
our own modules, at the top or inside a function, is checked against the rules below. A broken
rule fails with the importing file, its line and the module it imports.

    contract                      imports nothing of ours
    parse                         contract
    fmt                           contract, parse (it formats what the reader read)
    stages.*                      contract, parse, fmt and sibling stages (shared helpers)
    pipeline                      stages, contract, parse, render
    kpi_publisher (the rest)      never dashboard, execution or bench, except at the
                                  composition points named in COMPOSITION_POINTS
    dashboard                     its own modules, contract, fmt, parse (the tolerant reader),
                                  fs (the defensive file reader), schemas (schema_version) and
                                  config (the publisher's own settings resolver)
    execution                     its own modules, stages, pipeline, render, fs, contract,
                                  parse, config (build settings), except its command module
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kpi_publisher", "dashboard", "execution", "bench")

# Modules that wire the outer packages into the `hedge-kpi` command, and why they may.
COMPOSITION_POINTS: dict[str, frozenset[str]] = {
    # `hedge-kpi demo` starts the demo executor, the publisher and the dashboard together.
    "kpi_publisher.demo_supervisor": frozenset({"dashboard", "execution"}),
}
# Execution modules that are commands of their own (argument parsing, logging, signals).
EXECUTION_COMMANDS = frozenset({"execution.demo_executor"})

DASHBOARD_MAY_USE = frozenset(
    {
        "kpi_publisher.contract",
        "kpi_publisher.fmt",
        "kpi_publisher.parse",
        "kpi_publisher.fs",
        "kpi_publisher.schemas",
        "kpi_publisher.config",
    }
)
EXECUTION_MAY_USE = frozenset(
    {
        "kpi_publisher.stages",
        "kpi_publisher.pipeline",
        "kpi_publisher.render",
        "kpi_publisher.fs",
        "kpi_publisher.contract",
        "kpi_publisher.parse",
        "kpi_publisher.config",
    }
)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    path: Path
    line: int
    target: str  # dotted module name imported

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.importer} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def ours(dotted: str) -> bool:
    return dotted.split(".")[0] in PACKAGES


def imports_of(path: Path, source: str | None = None) -> Iterator[Import]:
    """Every import of our own modules in `path` (or in `source`, as if it were that file's
    text); `from pkg import mod` names the module."""
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    text = path.read_text("utf-8") if source is None else source
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if ours(alias.name):
                    yield Import(importer, path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not ours(base):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(importer, path, node.lineno, sub if is_module(sub) else base)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found.extend(imports_of(path))
    return found


def within(target: str, allowed: frozenset[str] | set[str]) -> bool:
    """True when `target` is one of `allowed` or inside one of them (a package)."""
    return any(target == a or target.startswith(a + ".") for a in allowed)


def broken_rule(imp: Import) -> str | None:
    """Why `imp` breaks a layer rule, or None when it keeps to them."""
    me, target = imp.importer, imp.target
    if me == target or (target.startswith(me + ".") and me.count(".") == 0):
        return None  # a package's own __init__ and its submodules
    if me == "kpi_publisher.contract":
        return "contract imports nothing of ours"
    if me == "kpi_publisher.parse":
        return None if target == "kpi_publisher.contract" else "parse imports only contract"
    if me == "kpi_publisher.fmt":
        ok = {"kpi_publisher.contract", "kpi_publisher.parse"}
        return None if target in ok else "fmt imports only contract and parse"
    if me.startswith("kpi_publisher.stages"):
        ok = {"kpi_publisher.contract", "kpi_publisher.parse", "kpi_publisher.fmt"}
        if within(target, ok | {"kpi_publisher.stages"}):
            return None
        return "stages import only contract, parse, fmt and sibling stages"
    if me == "kpi_publisher.pipeline":
        ok = {
            "kpi_publisher.stages",
            "kpi_publisher.contract",
            "kpi_publisher.parse",
            "kpi_publisher.render",
        }
        return (
            None if within(target, ok) else "pipeline imports only stages, contract, parse, render"
        )
    top = target.split(".")[0]
    if me.startswith("kpi_publisher"):
        if top == "kpi_publisher" or top in COMPOSITION_POINTS.get(me, frozenset()):
            return None
        return f"kpi_publisher never imports {top} (only the composition points may)"
    if me.startswith("dashboard"):
        if top == "dashboard" or within(target, DASHBOARD_MAY_USE):
            return None
        return "dashboard imports only its own modules, contract, fmt, parse, fs, schemas, config"
    if me.startswith("execution"):
        if top == "execution" or within(target, EXECUTION_MAY_USE) or me in EXECUTION_COMMANDS:
            return None
        return (
            "execution imports only its own modules, stages, pipeline, render, fs, contract, parse"
        )
    return None  # bench: the outermost layer, measures everything


def test_every_import_keeps_to_its_layer() -> None:
    imports = all_imports()
    assert len(imports) > 100  # the walk found the tree
    broken = [f"{imp}  ({why})" for imp in imports if (why := broken_rule(imp)) is not None]
    assert not broken, "imports that break a layer rule:\n" + "\n".join(broken)


def test_contract_is_dependency_free() -> None:
    path = ROOT / "kpi_publisher" / "contract.py"
    tree = ast.parse(path.read_text("utf-8"))
    stdlib_only = {
        (n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert stdlib_only <= {
        "__future__",
        "collections",
        "dataclasses",
        "enum",
        "math",
        "pathlib",
        "typing",
    }, stdlib_only


def test_composition_points_exist() -> None:
    for name in (*COMPOSITION_POINTS, *EXECUTION_COMMANDS):
        assert is_module(name), f"{name} is named as a composition point but does not exist"


@pytest.mark.parametrize(
    ("importer", "line", "target", "rule"),
    [
        (
            "kpi_publisher/stages/status.py",
            "from kpi_publisher.sources import OK",
            "sources",
            "stages",
        ),
        ("kpi_publisher/pipeline.py", "from kpi_publisher import config", "config", "pipeline"),
        ("kpi_publisher/contract.py", "import kpi_publisher.parse", "parse", "contract"),
        ("kpi_publisher/parse.py", "from kpi_publisher.fmt import fmt_money", "fmt", "parse"),
        ("kpi_publisher/check.py", "from dashboard import data", "dashboard.data", "kpi_publisher"),
        ("dashboard/views.py", "from kpi_publisher.stages import nav", "stages.nav", "dashboard"),
        ("execution/sync_state.py", "from kpi_publisher import lock", "lock", "execution"),
    ],
)
def test_a_wrong_import_fails_naming_the_file_and_the_import(
    importer: str, line: str, target: str, rule: str
) -> None:
    (imp,) = imports_of(ROOT / importer, f"x = 1\n{line}\n")
    why = broken_rule(imp)
    assert why is not None and why.startswith(rule), (str(imp), why)
    assert str(imp).startswith(f"{importer}:2: ")
    assert str(imp).endswith(target)
