"""The package's imports, read from the source with ``ast`` (nothing is imported): no cycle, and
no import against the floors of the house.

Floors, bottom up (a module imports its own room and the floors below, never a floor above):

0. shared helpers: ``_validation``, ``_memory``, ``_progress``, ``_params``, ``_operator``,
   ``_checkpoint``, ``_closing``, ``temperature``;
1. the library: ``noise``, ``dynamics``, ``trajectory``, which never import one another;
2. users of the library: ``paper``, ``reference``, ``monitor`` (a training run watched by the
   recorder and the noise engine together, and what its record shows), which never import one
   another;
3. ``report``, which draws and renders the results of the floors below (the monitor's run
   dashboard included), and ``integrations``, the training frameworks' callbacks over
   ``monitor``, imported by nothing in the package (each imports its framework); the two never
   import each other;
4. ``reproduce``, the paper's experiments, imported by nothing outside it but ``cli``;
5. ``cli``;
6. the package's face: ``sgdscope/__init__.py`` and ``__main__``.

Inside ``reproduce`` the same rule holds one level down: the run context, then the protocol
(``_experiment``), then the four experiments (which never import one another), then the registry
(``reproduce/__init__.py``). Every experiment is a folder with the same rooms. The results they
hand over and the report that renders them live in ``report``, a floor below.

Every import counts, at any depth (inside functions and under ``TYPE_CHECKING`` too): each is a
dependency a reader has to follow. The checker itself is tested on synthetic packages.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"


# ------------------------------------------------------------------------------------ checker
def _module_name(path: Path, src: Path) -> tuple[str, bool]:
    """Dotted name of the module at ``path`` and whether it is a package's ``__init__``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_init else parts), is_init


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` (a module or a name inside one) belongs to."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def module_graph(src: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of `package` it imports}`` for every ``.py`` file under ``src/package``.

    Relative imports are resolved against the importing module; ``from p import name`` is an
    import of the submodule ``p.name`` when there is one, else of ``p``.
    """
    files = sorted((src / package).rglob("*.py"))
    names = {path: _module_name(path, src) for path in files}
    known = {name for name, _ in names.values()}
    graph: dict[str, set[str]] = {}
    for path, (module, is_init) in names.items():
        here = module.split(".") if is_init else module.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                stem = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{stem}.{alias.name}"
                    targets.add(sub if sub in known else stem)
        inside = {_resolve(t, known) for t in targets if t.split(".")[0] == package}
        graph[module] = {t for t in inside if t is not None and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@dataclass(frozen=True)
class Floor:
    """Rooms on one floor (first name component below the scope; ``""``: the scope's own
    ``__init__``). ``independent``: its rooms never import one another."""

    rooms: frozenset[str]
    independent: bool = False


@dataclass(frozen=True)
class Layering:
    """Floors of the modules under ``scope``, bottom first, and rooms only some may import."""

    scope: str
    floors: tuple[Floor, ...]
    only_imported_by: dict[str, frozenset[str]] = field(default_factory=dict)

    def room(self, module: str) -> str | None:
        """The room of ``module`` (None: outside the scope)."""
        if module == self.scope:
            return ""
        if not module.startswith(self.scope + "."):
            return None
        return module[len(self.scope) + 1 :].split(".")[0]

    def floor(self, room: str) -> int | None:
        return next((i for i, f in enumerate(self.floors) if room in f.rooms), None)

    def violations(self, graph: dict[str, set[str]]) -> list[str]:
        """Every import against the floors, as ``"a imports b: why"``; unplaced rooms too."""
        out = []
        rooms = {r for m in graph if (r := self.room(m)) is not None}
        out += [
            f"{self.scope}: room {r!r} is on no floor"
            for r in sorted(rooms)
            if self.floor(r) is None
        ]
        for a, targets in sorted(graph.items()):
            ra = self.room(a)
            if ra is None or self.floor(ra) is None:
                continue
            for b in sorted(targets):
                rb = self.room(b)
                if rb is None or rb == ra or self.floor(rb) is None:
                    continue
                fa, fb = self.floor(ra), self.floor(rb)
                allowed = self.only_imported_by.get(rb)
                if allowed is not None and ra not in allowed:
                    out.append(f"{a} imports {b}: only {sorted(allowed)} may import {rb!r}")
                elif fb > fa:
                    out.append(f"{a} imports {b}: floor {fa} imports floor {fb} above it")
                elif fb == fa and self.floors[fa].independent:
                    out.append(f"{a} imports {b}: {ra!r} and {rb!r} must not import each other")
        return out


def _floors(*floors: tuple[set[str], bool]) -> tuple[Floor, ...]:
    return tuple(Floor(frozenset(rooms), independent) for rooms, independent in floors)


PACKAGE = Layering(
    "sgdscope",
    _floors(
        (
            {
                "_validation",
                "_memory",
                "_progress",
                "_params",
                "_operator",
                "_checkpoint",
                "_closing",
                "temperature",
            },
            False,
        ),
        ({"noise", "dynamics", "trajectory"}, True),
        ({"paper", "reference", "monitor"}, True),
        ({"report", "integrations"}, True),
        ({"reproduce"}, False),
        ({"cli"}, False),
        ({"", "__main__"}, False),
    ),
    only_imported_by={"reproduce": frozenset({"cli"}), "integrations": frozenset()},
)
REPRODUCE = Layering(
    "sgdscope.reproduce",
    _floors(
        ({"context"}, False),
        ({"_experiment"}, False),
        ({"spectra", "trajectory", "toy", "scaling", "nonequilibrium"}, True),
        ({""}, False),
    ),
)
EXPERIMENTS = ("spectra", "trajectory", "toy", "scaling", "nonequilibrium")
ROOMS = {"__init__.py", "settings.py", "measure.py", "claims.py", "figures.py"}


# --------------------------------------------------------------------------------- the house
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return module_graph(SRC, "sgdscope")


def test_the_package_has_no_import_cycle(graph):
    assert cycles(graph) == []


def test_no_import_runs_against_the_floors(graph):
    assert PACKAGE.violations(graph) == []


def test_no_import_runs_against_the_floors_of_reproduce(graph):
    assert REPRODUCE.violations(graph) == []


def test_the_graph_sees_the_imports_that_make_the_floors(graph):
    """Guards the checker against reading nothing: known arrows are found."""
    assert "sgdscope.reproduce" in graph["sgdscope.cli.reproduce"]
    assert "sgdscope._validation" in graph["sgdscope.noise.gradient_noise"]
    assert "sgdscope.reproduce._experiment" in graph["sgdscope.reproduce.toy.settings"]
    assert "sgdscope.trajectory" in graph["sgdscope.reproduce.trajectory.measure"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_is_a_folder_with_the_same_rooms(name):
    folder = SRC / "sgdscope" / "reproduce" / name
    assert ROOMS <= {p.name for p in folder.glob("*.py")}


# ------------------------------------------------------------------------ the checker itself
def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_checker_finds_a_cycle_through_relative_and_lazy_imports(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "from .x import f\n",
        "a/x.py": "def f():\n    from ..b import y\n",  # a lazy import counts
        "b/__init__.py": "",
        "b/y.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import x\n",
        "c.py": "from . import a\n",
    })  # fmt: skip
    g = module_graph(src, "pkg")
    assert g["pkg.a.x"] == {"pkg.b.y"} and g["pkg.b.y"] == {"pkg.a.x"}
    assert g["pkg.c"] == {"pkg.a"} and g["pkg.a"] == {"pkg.a.x"}
    assert cycles(g) == [["pkg.a.x", "pkg.b.y"]]


def test_checker_finds_no_cycle_in_a_one_way_package(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "from . import top\n",
        "low.py": "import math\n",
        "mid.py": "from .low import *\nimport pkg.low\n",
        "top.py": "from pkg import mid\nfrom .mid import name_not_a_module\n",
    })  # fmt: skip
    g = module_graph(src, "pkg")
    assert g == {"pkg": {"pkg.top"}, "pkg.low": set(), "pkg.mid": {"pkg.low"},
                 "pkg.top": {"pkg.mid"}}  # fmt: skip
    assert cycles(g) == []


def test_checker_flags_every_kind_of_violation(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "_helper.py": "from .noise import x\n",  # ground floor imports the library
        "noise/__init__.py": "", "noise/x.py": "from ..trajectory import y\n",  # siblings
        "trajectory/__init__.py": "", "trajectory/y.py": "from .._helper import *\n",
        "paper/__init__.py": "from ..reproduce import z\n",  # only cli may import reproduce
        "reproduce/__init__.py": "", "reproduce/z.py": "from ..noise import x\n",
        "cli.py": "from .reproduce import z\n",
        "extra.py": "",  # on no floor
    })  # fmt: skip
    layering = Layering(
        "pkg",
        _floors(({"_helper"}, False), ({"noise", "trajectory"}, True), ({"paper"}, True),
                ({"reproduce"}, False), ({"cli", ""}, False)),
        only_imported_by={"reproduce": frozenset({"cli"})},
    )  # fmt: skip
    found = layering.violations(module_graph(src, "pkg"))
    assert found == [
        "pkg: room 'extra' is on no floor",
        "pkg._helper imports pkg.noise.x: floor 0 imports floor 1 above it",
        "pkg.noise.x imports pkg.trajectory.y: 'noise' and 'trajectory' must not import each other",
        "pkg.paper imports pkg.reproduce.z: only ['cli'] may import 'reproduce'",
    ]


def test_checker_accepts_the_floors_when_kept(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "from . import cli\n",
        "_helper.py": "",
        "noise/__init__.py": "from .._helper import *\n",
        "paper/__init__.py": "from ..noise import *\n",
        "cli.py": "from .paper import *\nfrom . import noise\n",
    })  # fmt: skip
    layering = Layering(
        "pkg",
        _floors(({"_helper"}, False), ({"noise"}, True), ({"paper"}, True), ({"cli", ""}, False)),
    )
    assert layering.violations(module_graph(src, "pkg")) == []
