"""Imports point down only (DESIGN.md section 1, docs/architecture.rst): every module
under monq/ is parsed and each of its imports of monq (at the top, inside functions
and under TYPE_CHECKING alike) must reach a lower layer or its own package; packages
of one layer do not import each other. Handlers and commands ask the service layer,
never a store's query module."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "monq"
# Lower numbers lie lower. "monq" is the package root (monq.Job, monq.Error).
LAYERS: dict[str, float] = {
    "core": 0, "queue": 1, "monq": 1.5,
    "notify": 2, "schedule": 2, "history": 2, "jobs": 2,
    "worker": 3, "api": 3,
    "cli": 4, "testing": 4, "__main__": 5,
}
# The parts of the store a handler or command may hold: the connection itself.
STORE_CONNECTION = "monq.core.store"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(path: Path, module: str | None = None) -> set[str]:
    """The monq modules `path` (the module `module`, by default the one at that path)
    imports, relative imports resolved."""
    module = module or module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if path.name != "__init__.py":  # a module's anchor is its package
                    anchor = anchor[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from monq.core import jsonio` imports the module monq.core.jsonio
            found |= {f"{base}.{alias.name}" for alias in node.names
                      if (PACKAGE.parent / f"{base}.{alias.name}".replace(".", "/")
                          ).with_suffix(".py").exists()}
    return {name for name in found if name == "monq" or name.startswith("monq.")}


def all_imports() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_package_has_a_layer() -> None:
    packages = {package_of(module) for module in all_imports()}
    assert packages <= set(LAYERS), f"give these a layer: {sorted(packages - set(LAYERS))}"


def test_imports_point_down_only() -> None:
    upward = set()
    for module, targets in all_imports().items():
        source = package_of(module)
        for target in targets:
            into = package_of(target)
            if into != source and LAYERS[into] >= LAYERS[source]:
                upward.add((module, target))
    assert not upward, "imports that point up or sideways:\n" + "\n".join(
        f"  {module} -> {target}" for module, target in sorted(upward))


def test_handlers_and_commands_ask_services_not_stores() -> None:
    """monq/api and monq/cli hold a store connection at most; every question goes
    through a service (monq/queue/reads.py, monq/history/reads.py, ...)."""
    reaching = sorted(
        (module, target) for module, targets in all_imports().items()
        if package_of(module) in ("api", "cli")
        for target in targets if target.startswith(STORE_CONNECTION + "."))
    assert not reaching, "\n".join(f"  {m} -> {t}" for m, t in reaching)


def test_the_rules_see_an_upward_import(tmp_path: Path) -> None:
    """The parser finds imports in every form they take, so the rules above can fail."""
    probe = tmp_path / "probe.py"
    probe.write_text("import monq.cli\n"
                     "from monq.api import base\n"
                     "from ..store import jobs\n"
                     "def later():\n"
                     "    from monq.worker.daemon import WorkerDaemon\n")
    found = imports(probe, "monq.core.auth.probe")
    assert {"monq.cli", "monq.api.base", "monq.core.store.jobs",
            "monq.worker.daemon"} <= found
