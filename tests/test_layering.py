"""The layer table of docs/architecture.md holds: no module imports a module of a layer above its own.

The table (``## Layers``, first row = top layer) is this test's input: each row
names modules as backticked paths relative to ``s3prl_colld/`` (``hook.py``,
``models/*``: a folder and everything under it; ``run_pretrain.py``: a script at
the repository root; text in parentheses only illustrates). A module belongs to the row of its most specific match
(a file beats a folder, a deeper folder a shallower one). Every ``import`` and
``from ... import`` of ours counts, also those inside functions (a lazy import
is still an arrow) and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "s3prl_colld"
DOC = REPO / "docs" / "architecture.md"


@dataclass(frozen=True)
class Pattern:
    layer: int  # row index: 0 = top
    layer_name: str
    path: str  # "models/" (a folder) or "hook.py" (a file), relative to the package, or a root script

    def matches(self, rel: str) -> bool:
        return rel.startswith(self.path) if self.path.endswith("/") else rel == self.path

    @property
    def specificity(self) -> tuple[int, int]:
        return (0 if self.path.endswith("/") else 1, self.path.count("/"))


def read_layers(doc: Path = DOC) -> list[Pattern]:
    """The patterns of the ``## Layers`` table, top layer first."""
    text = doc.read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # after header and separator
    patterns = []
    for i, row in enumerate(rows):
        cells = [c.strip() for c in row.strip("|").split("|")]
        listed = re.sub(r"\([^()]*\)", "", cells[1])  # parentheses only illustrate: `pretrain/*` (`task.py`, ...)
        for token in re.findall(r"`([^`]+)`", listed):
            token = token.strip()
            if token.endswith("/*"):
                patterns.append(Pattern(i, cells[0], token[:-1]))
            elif token.endswith(".py"):
                patterns.append(Pattern(i, cells[0], token))
    assert patterns, f"no layer table found under '## Layers' in {doc}"
    return patterns


def layer_of(rel: str, patterns: list[Pattern]) -> Pattern | None:
    found = [p for p in patterns if p.matches(rel)]
    return max(found, key=lambda p: p.specificity) if found else None


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the package under ``root`` and the scripts at ``root``."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(root.glob("*.py")):
        if path.name != "setup.py":
            out[path.stem] = path
    return out


def imported_modules(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """``(line, module)`` for each import of one of ``modules`` in the file at ``path`` (module ``name``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod; `from mod import obj` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] == PACKAGE and target != PACKAGE:
                found.append((node.lineno, target))
    return found


def rel_path(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    return str(rel.relative_to(PACKAGE)) if rel.parts[0] == PACKAGE else rel.name


def check(root: Path = REPO, doc: Path = DOC) -> tuple[list[str], list[str]]:
    """``(violations, unplaced)``: each import of a higher layer, and each module the table does not place."""
    patterns = read_layers(doc)
    modules = module_files(root)
    violations, unplaced = [], []
    for name, path in modules.items():
        here = layer_of(rel_path(path, root), patterns)
        if here is None:
            unplaced.append(rel_path(path, root))
            continue
        for line, target in imported_modules(path, name, modules):
            there = layer_of(rel_path(modules[target], root), patterns)
            if there is not None and there.layer < here.layer:
                violations.append(f"{rel_path(path, root)}:{line} ({here.layer_name}) imports {target} "
                                  f"({there.layer_name}, a layer above)")
    return violations, unplaced


def test_every_module_is_placed_and_no_import_runs_up_a_layer() -> None:
    violations, unplaced = check()
    assert not unplaced, f"modules the layer table of docs/architecture.md does not place: {unplaced}"
    assert not violations, "\n".join(violations)


def test_the_table_names_only_paths_that_exist() -> None:
    for p in read_layers():
        target = REPO / PACKAGE / p.path if not (REPO / p.path).is_file() else REPO / p.path
        assert target.exists(), f"docs/architecture.md's layer table names {p.path}, which does not exist"


def test_a_planted_back_import_is_caught(tmp_path: Path) -> None:
    """Copy the package, plant a lazy import of the pretrain CLI in models/student.py: the check reports it."""
    shutil.copytree(REPO / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    for script in REPO.glob("run_*.py"):
        shutil.copy(script, tmp_path / script.name)
    assert check(tmp_path) == ([], [])
    student = tmp_path / PACKAGE / "models" / "student.py"
    student.write_text(student.read_text() + "\n\ndef _planted() -> None:\n"
                       "    from s3prl_colld.pretrain import cli  # noqa: F401\n")
    violations, _ = check(tmp_path)
    assert len(violations) == 1 and violations[0].startswith("models/student.py:")
    assert "imports s3prl_colld.pretrain.cli (CLIs, a layer above)" in violations[0]
    # and a new module that the table does not place is reported
    (tmp_path / PACKAGE / "stray.py").write_text('"""A module nobody placed."""\n')
    assert check(tmp_path)[1] == ["stray.py"]
