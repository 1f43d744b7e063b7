"""The pathcnn command: every stage is a subcommand and takes its paths from dvc.yaml's command, not defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathcnn.cli import COMMANDS, build_parser, main
from tests.conftest import stage_command

SINGLE = ("patches", "split", "report")  # the stages without a model


def test_every_command_is_available() -> None:
    parser = build_parser()
    available = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 (argparse keeps no public list)
    assert available == set(COMMANDS)


@pytest.mark.parametrize("stage", ["patches", "split", "tune", "train", "baseline", "control", "crossval", "report"])
def test_stages_take_every_path_from_the_command_line(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    """No stage has a default path to drift from dvc.yaml: without its paths the command stops and names them."""
    with pytest.raises(SystemExit) as stopped:
        build_parser(stage).parse_args(
            [stage, "--model", "model2"] if stage not in ("patches", "split", "report") else [stage]
        )
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "the following arguments are required" in error and "--out" in error


@pytest.mark.parametrize(
    "stage",
    [
        "patches",
        "split",
        "tune",
        "train",
        "baseline",
        "control",
        "crossval",
        "crossval-untuned",
        "nonsense",
        "summary",
        "report",
    ],
)
def test_every_dvc_yaml_command_parses_to_its_own_paths(stage: str) -> None:
    """The paths a stage uses are exactly the ones its dvc.yaml command passes."""
    words = stage_command(stage, None if stage in SINGLE else "model2")
    args = build_parser(words[1]).parse_args(words[1:])
    for option, value in zip(words[2::1], words[3::1], strict=False):
        if option.startswith("--") and not value.startswith("--"):
            assert str(getattr(args, option[2:].replace("-", "_"))) == value, option


def test_summary_stage_needs_its_out_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["summary", "--model", "model1", "--results", str(tmp_path)])
    assert code == 1
    assert "--model needs --out" in capsys.readouterr().err


def test_errors_are_one_line_with_exit_code_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "split",
            "--patches",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "out"),
            "--params",
            str(tmp_path / "missing.yaml"),
        ]
    )
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
