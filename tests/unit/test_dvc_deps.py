"""dvc.yaml's code dependencies are derived from the imports: every module a stage can run is a dep of it.

A module missing from a stage's deps means `dvc repro` reports the stage up to date after that module
changed, while its outputs came from other code. A module listed but never imported re-runs the stage
for nothing. So the Python deps of each stage must equal the import closure of the command it runs.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import yaml

from pathcnn.cli import COMMANDS, STAGES_THAT_TRACK

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "src"


def module_file(module: str) -> Path | None:
    """src/pathcnn/<...>.py of a pathcnn module, or None for a package __init__ (they hold no code)."""
    path = SOURCE.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def imported_modules(path: Path) -> set[str]:
    """Every pathcnn module a file imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pathcnn")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pathcnn"):
            found.add(node.module)
            # `from pathcnn import tracking` names a module, `from pathcnn.x import f` a function.
            found |= {
                f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}")
            }
    return found


def closure(start: set[str]) -> set[Path]:
    """The files of every pathcnn module reachable from `start` through imports."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        if path is not None:
            todo.extend(imported_modules(path) - seen)
    return {path for module in seen if (path := module_file(module)) is not None}


def stage_commands() -> dict[str, tuple[str, list[str]]]:
    """Stage name (foreach expanded) -> (pathcnn subcommand, the stage's deps)."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    models = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    stages: dict[str, tuple[str, list[str]]] = {}
    for name, stage in pipeline["stages"].items():
        instances = {f"{name}@{key}": stage["do"] for key in models} if "foreach" in stage else {name: stage}
        for instance, body in instances.items():
            words = shlex.split(body["cmd"])
            assert words[0] == "pathcnn", f"{instance}: its command is not `pathcnn <stage>`"
            stages[instance] = (words[1], [str(dep).replace("${key}", "KEY") for dep in body.get("deps", [])])
    return stages


def expected_deps(command: str) -> set[str]:
    """The files the `pathcnn <command>` process can import: the CLI, the command's module and their imports."""
    start = {"pathcnn.cli", COMMANDS[command][0]}
    if command in STAGES_THAT_TRACK:
        start.add("pathcnn.tracking")  # the CLI closes abandoned MLflow runs before a tracked stage
    return {path.relative_to(REPO).as_posix() for path in closure(start)}


def rewritten_dvc_yaml(text: str) -> str:
    """dvc.yaml with every stage's src/pathcnn deps replaced by its import closure (comments and order kept)."""
    pipeline = yaml.safe_load(text)["stages"]
    lines, out, stage = text.splitlines(keepends=True), [], None
    for line in lines:
        if (found := re.match(r"^  ([a-z][a-z0-9_-]*):\s*$", line)) and found.group(1) in pipeline:
            stage, written = found.group(1), False
        if stage and re.match(r"^\s+- src/pathcnn/\S+\.py\s*$", line):
            if not written:
                body = pipeline[stage].get("do", pipeline[stage])
                indent = line[: len(line) - len(line.lstrip())]
                out += [f"{indent}- {path}\n" for path in sorted(expected_deps(shlex.split(body["cmd"])[1]))]
                written = True
            continue
        out.append(line)
    return "".join(out)


def test_package_init_files_hold_no_imports() -> None:
    """__init__.py files are left out of the deps, which is only right while they import nothing."""
    for path in SOURCE.joinpath("pathcnn").rglob("__init__.py"):
        assert not imported_modules(path), path


def test_every_stage_depends_on_exactly_the_code_it_imports() -> None:
    problems = []
    for stage, (command, deps) in stage_commands().items():
        listed = {dep for dep in deps if dep.startswith("src/") and dep.endswith(".py")}
        expected = expected_deps(command)
        if listed != expected:
            missing, extra = sorted(expected - listed), sorted(listed - expected)
            problems.append(f"{stage}: missing {missing}, not imported {extra}")
    assert not problems, "\n".join(problems)


def test_the_closure_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check can fail: a function-level import is found, so a stage missing it would be reported."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from pathcnn import stain\n    from pathcnn.training import fit_model\n")
    assert imported_modules(sample) == {"pathcnn", "pathcnn.stain", "pathcnn.training"}
    # stages/train.py imports stain.py inside a function only (the dep train@ once lacked).
    assert SOURCE / "pathcnn" / "stain.py" in closure({"pathcnn.stages.train"})


def test_the_rewrite_is_what_the_check_expects(tmp_path: Path) -> None:
    """`make deps` output passes the check: drop a dep from a stage and the rewrite puts it back."""
    text = (REPO / "dvc.yaml").read_text()
    damaged = re.sub(r"^\s+- src/pathcnn/stain\.py\n", "", text, count=1, flags=re.M)
    assert damaged != text
    assert rewritten_dvc_yaml(damaged).count("src/pathcnn/stain.py") == text.count("src/pathcnn/stain.py")


if __name__ == "__main__":  # `make deps`: rewrite dvc.yaml's code deps from the imports
    path = REPO / "dvc.yaml"
    before = path.read_text()
    after = rewritten_dvc_yaml(before)
    path.write_text(after)
    print("dvc.yaml: code deps " + ("updated" if after != before else "already current"))
