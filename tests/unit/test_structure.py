"""The package's structure, enforced: no import cycles at import time, rooms import downwards."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ..conftest import REPO

PACKAGE = REPO / "src" / "flowops"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_body(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements executed at import time: top level, try/except and if-branches, but not `if TYPE_CHECKING:`."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                out += _runtime_body(node.orelse)
                continue
            out += _runtime_body(node.body) + _runtime_body(node.orelse)
        elif isinstance(node, ast.Try):
            out += _runtime_body(node.body) + _runtime_body(node.orelse) + _runtime_body(node.finalbody)
            for handler in node.handlers:
                out += _runtime_body(handler.body)
        else:
            out.append(node)
    return out


def import_graph(root: Path, inside_functions: bool = False) -> dict[str, set[str]]:
    """module -> the package's modules it imports at import time (function bodies excluded), or
    anywhere in it, functions included, with `inside_functions` (`if TYPE_CHECKING:` still excluded)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = _everywhere(tree.body) if inside_functions else _runtime_body(tree.body)
        for node in nodes:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative import
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join([*package[: len(package) - node.level + 1], node.module])
                # `from a.b import c` imports module a.b.c when c is a module, else it reads a name of a.b
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _everywhere(body: list[ast.stmt]) -> list[ast.AST]:
    """Every node of the module, function bodies included, but not what `if TYPE_CHECKING:` holds."""
    out: list[ast.AST] = []
    for node in _runtime_body(body):
        out += ast.walk(node)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "flowops.promotion.promote" in graph  # the whole package was read
    assert cycles(graph) == []


def test_no_import_cycle_hides_inside_a_function():
    """A cycle closed by an import inside a function is still a cycle: the two modules cannot be
    understood, tested or moved apart (#34). None is left."""
    graph = import_graph(PACKAGE, inside_functions=True)
    assert graph["flowops.segmentation.training.workers"] >= {
        "flowops.segmentation.training.fit",
        "flowops.segmentation.data.cache",
    }  # lazy imports seen
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    pkg = tmp_path / "flowops"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from flowops.sub import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom ..c import thing\nif TYPE_CHECKING:\n    import flowops.a\n"
    )
    (pkg / "c.py").write_text(
        "def f():\n    import flowops.a\ntry:\n    from flowops import a\nexcept ImportError:\n    pass\n"
    )
    assert cycles(import_graph(pkg)) == [["flowops.a", "flowops.c", "flowops.sub.b"]]
    # Only the import inside c.f closes this one: it counts when functions are read too.
    (pkg / "c.py").write_text("def f():\n    import flowops.a\n")
    assert cycles(import_graph(pkg)) == []
    assert cycles(import_graph(pkg, inside_functions=True)) == [["flowops.a", "flowops.c", "flowops.sub.b"]]


ROOMS = (
    "spec",
    "gitops",
    "registry",
    "promotion",
    "report",
    "bundle",
    "training",
    "serving",
    "teamserver",
    "cli",
    "segmentation",
)
# What each room may import at import time (besides the shared modules at the top).
ALLOWED = {
    "spec": set(),
    "gitops": {"spec"},
    "registry": {"spec", "gitops"},
    "promotion": {"spec", "gitops", "registry"},
    "report": {"spec", "gitops", "registry", "promotion"},
    "bundle": {"spec", "gitops", "registry", "promotion"},
    "training": {"spec", "gitops"},  # running any project's training: mlflow run, the lease, holders
    "serving": {"registry"},  # its reads of the alias go through the registry's access layer
    "teamserver": {"spec", "registry"},
    "cli": {"cli"},
    # the segmentation template builds on the engine (never the other way: see below)
    "segmentation": {"spec", "gitops", "registry", "promotion", "report", "training"},
}


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_import_only_downwards(room):
    graph = import_graph(PACKAGE)
    bad = []
    for module, targets in graph.items():
        if not module.startswith(f"flowops.{room}."):
            continue
        for target in targets:
            parts = target.split(".")
            other = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ROOMS) else None
            if other and other != room and other not in ALLOWED[room]:
                bad.append(f"{module} imports {target}")
    assert bad == []


def test_no_test_skips_itself_silently():
    """A broken install must fail the suite, not shrink it: no importorskip, skip or skipif."""
    here = Path(__file__).resolve().parents[1]
    found = [
        f"{path.relative_to(here)}:{n}"
        for path in sorted(here.rglob("*.py"))
        if path != Path(__file__).resolve()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(word in line for word in ("importorskip", "pytest.skip", "mark.skip"))
    ]
    assert found == []


def test_a_missing_system_package_stops_the_run_at_once_in_one_line():
    import subprocess
    import sys

    here = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "tests/integration/test_server.py",
        ],
        cwd=here,
        env={"PATH": "/nonexistent", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        "these tests need PostgreSQL: apt-get install postgresql (.ci/run installs them)" in proc.stdout + proc.stderr
    )


TEMPLATE = ("tensorflow", "tf_keras", "segmentation_models", "flowops.segmentation")
SHIMS = {"flowops.pyfunc", "flowops.train"}  # the template's model and entry point at their old paths


def every_import(path: Path) -> set[str]:
    """Every module a file names in an import, at any depth (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _template(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TEMPLATE)


def test_the_engine_never_imports_the_template():
    """Every module but the segmentation template's (and its two old-path shims) works for any MLflow
    Project: no path through it, lazy or not, reaches TensorFlow or the template. The engine finds
    the template's plug-ins through entry points (flowops.plugins); tests/integration/
    test_tabular_template.py runs a whole loop with the template masked."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path, PACKAGE)
        if _template(module) or module in SHIMS:
            continue
        reached = {name for name in every_import(path) if _template(name)}
        if reached:
            found[module] = reached
    assert len(list(PACKAGE.rglob("*.py"))) > 100  # the whole package was read
    assert found == {}


def test_the_engine_check_sees_a_lazy_import(tmp_path):
    (tmp_path / "m.py").write_text("def f():\n    from flowops.segmentation.training import fit\n")
    assert _template(next(iter(every_import(tmp_path / "m.py"))))
    assert not _template("flowops.segmentations") and _template("tensorflow.keras")


# What only the segmentation template may name: its metrics, its classes, its model, spec and data.
SEGMENTATION_WORDS = re.compile(
    r"val_miou|val_iou|val_fscore|[\"'`]iou[\"'`]|[\"'`]background|SegmentationModel|ExperimentSpec"
    r"|\bUnet\b|\bCOCO\b|\bcoco\b|pycocotools"
)


def test_no_engine_module_names_a_segmentation_metric_or_class():
    """The engine knows a template's metrics, classes and models only through its plug-ins (the
    metric vocabulary, the schema, evidence, the image adapter): no engine module, comments and
    docstrings included, names one of them."""
    found = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not _template(module_name(path, PACKAGE))
        and module_name(path, PACKAGE) not in SHIMS
        and "templates" not in path.relative_to(PACKAGE).parts  # the project files `flowops init` copies
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SEGMENTATION_WORDS.search(line)
    ]
    assert found == []


def test_the_word_check_finds_segmentation_words():
    said = ('primary == "val_miou"', 'k != "background"', "SegmentationModel()", "from pycocotools import mask")
    assert all(SEGMENTATION_WORDS.search(s) for s in said)
    assert not any(SEGMENTATION_WORDS.search(s) for s in ("loads it in the background", "val_accuracy", "iou_like"))
    assert SEGMENTATION_WORDS.search((PACKAGE / "segmentation" / "metrics.py").read_text())  # the template does


def test_the_prediction_grid_is_a_plug_in_the_engine_finds_by_entry_point():
    """The report (engine) knows no segmentation: the template's grid is registered, not imported."""
    from importlib.metadata import entry_points

    from flowops.segmentation.report import prediction_grid

    (found,) = [e for e in entry_points(group="flowops.report") if e.name == "segmentation"]
    assert found.load() is prediction_grid
    assert "flowops.segmentation" not in (PACKAGE / "report" / "figures.py").read_text()


def test_the_registry_commands_go_through_the_api():
    """cli -> api -> promotion, report, registry: the registry commands parse, call flowops.api and
    print; the only registry name they use themselves is how a hold reads (describe_hold)."""
    reached = {
        name
        for name in every_import(PACKAGE / "cli" / "registry.py")
        if name.startswith(("flowops.promotion", "flowops.report", "flowops.registry"))
    }
    assert reached == {"flowops.registry.store"}
    assert "flowops.cli" not in {n.rsplit(".", 1)[0] for n in every_import(PACKAGE / "api.py")}
