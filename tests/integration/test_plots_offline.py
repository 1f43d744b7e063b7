"""`make plots` and `make plots-diff` on a copy of the repo: the page loads nothing from the network and draws."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_repo

EMBED_CALL = re.compile(r"vegaEmbed\('#([^']+)'")
REMOTE = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
# Every host name fails to resolve: the page gets exactly what it would get on a machine without network.
CHROMIUM_OFFLINE = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=10000",
    "--dump-dom",
]


class ScriptSources(HTMLParser):
    """Collects the src attribute of every <script> tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.sources.extend(value or "" for name, value in attrs if name == "src")


def script_sources(html: str) -> list[str]:
    parser = ScriptSources()
    parser.feed(html)
    return parser.sources


def vega_plot_count() -> int:
    """Plots of the repo's dvc.yaml that DVC draws with Vega (all but images), `foreach: ${models}` expanded."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    models = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    count = 0
    for stage in pipeline["stages"].values():
        copies = len(models) if stage.get("foreach") == "${models}" else 1
        for entry in stage.get("do", stage).get("plots", []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            count += copies * (Path(path).suffix.lower() != ".png")
    return count


def drawn_plots(dom: str) -> set[str]:
    """Ids of the Vega plot divs in a rendered DOM that hold a drawn chart (vega-embed's "marks" svg/canvas)."""
    parts = re.split(r'<div id="([^"]+)" class="vega-embed', dom)
    return {plot_id for plot_id, body in zip(parts[1::2], parts[2::2], strict=True) if 'class="marks"' in body}


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git copy of the repo: its dvc.yaml, params.yaml and committed plot files."""
    return copy_repo(tmp_path_factory.mktemp("plots"))


@pytest.fixture(scope="module", params=["plots", "plots-diff"])
def page(request: pytest.FixtureRequest, repo_copy: Path) -> Path:
    """The dvc_plots/index.html the make target writes, kept beside it as dvc_plots/<target>.html."""
    # The copy has no .venv: use this interpreter's, and treat its stamp as up to date.
    make = ["make", "-o", ".venv/.installed", request.param, f"BIN={Path(sys.executable).parent}"]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(make, cwd=repo_copy, check=True, capture_output=True, env=env)
    return Path(shutil.copy(repo_copy / "dvc_plots" / "index.html", repo_copy / "dvc_plots" / f"{request.param}.html"))


def test_no_script_is_loaded_from_the_network(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert [source for source in script_sources(html) if REMOTE.match(source)] == []
    assert "cdn.jsdelivr.net" not in html


def test_vega_embed_is_inlined_before_the_plots_call_it(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    defined = re.search(r"window\.vegaEmbed\s*=", html)
    first_call = EMBED_CALL.search(html)
    assert defined is not None and first_call is not None
    assert defined.start() < first_call.start()
    assert "{plot_divs}" not in html


def test_one_embed_call_per_vega_plot(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    plot_ids = EMBED_CALL.findall(html)
    assert len(plot_ids) == vega_plot_count() > 0
    assert len(set(plot_ids)) == len(plot_ids)
    assert all(f'<div id = "{plot_id}">' in html for plot_id in plot_ids)


@pytest.mark.browser
@pytest.mark.parametrize("page", ["plots"], indirect=True)  # plots-diff fills the same template
def test_every_vega_plot_is_drawn_without_network(page: Path) -> None:
    chromium = os.environ.get("PATHCNN_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        pytest.skip("chromium not installed (apt-get install chromium, or set PATHCNN_CHROMIUM)")
    dom = subprocess.run(
        [chromium, *CHROMIUM_OFFLINE, page.as_uri()], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert drawn_plots(dom) == set(EMBED_CALL.findall(page.read_text(encoding="utf-8")))
