"""The pathcnn command: every stage is a subcommand, shared arguments default to the dvc.yaml paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathcnn.cli import COMMANDS, build_parser, main
from pathcnn.stages.arguments import out_dir, split_file


def test_every_command_is_available() -> None:
    parser = build_parser()
    available = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 (argparse keeps no public list)
    assert available == set(COMMANDS)


@pytest.mark.parametrize("stage", ["tune", "train", "baseline", "control"])
def test_per_model_stages_default_to_the_pipeline_paths(stage: str) -> None:
    args = build_parser().parse_args([stage, "--model", "model2"])
    assert split_file(args) == Path("data/splits/model2.csv")
    assert out_dir(args, stage) == Path(f"results/{stage}/model2")
    assert args.patches == Path("data/patches") and args.params == Path("params.yaml")


def test_explicit_paths_win() -> None:
    args = build_parser().parse_args(["train", "--model", "m", "--split", "s.csv", "--out", "o"])
    assert split_file(args) == Path("s.csv") and out_dir(args, "train") == Path("o")


def test_errors_are_one_line_with_exit_code_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["split", "--patches", str(tmp_path / "none"), "--params", str(tmp_path / "missing.yaml")])
    assert code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and "missing.yaml" in error[0]


def test_a_command_imports_only_its_own_code(tmp_path: Path) -> None:
    """`pathcnn summary` loads the summary module's imports, not every stage (so dvc.yaml deps stay small)."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom pathcnn.cli import main\n"
        f"main(['summary', '--results', {str(tmp_path)!r}])\n"
        "print(sorted(name for name in sys.modules if name.startswith('pathcnn')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'pathcnn.stages.summary'" in loaded
    for other in ("pathcnn.stages.train", "pathcnn.training", "pathcnn.tracking", "pathcnn.stages.report"):
        assert f"'{other}'" not in loaded, other
