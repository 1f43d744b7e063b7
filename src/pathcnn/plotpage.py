"""The HTML page `dvc plots show/diff --html-template` fills in, with Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads those three libraries from a CDN, so its Vega plots are blank offline. This page
carries them itself, taken from the pinned vl-convert-python wheel (no network, no npm). It has DVC's
`{plot_divs}` placeholder but deliberately not `{scripts}`: that is where DVC would insert the CDN tags.

usage: python -m pathcnn.plotpage dvc_plots/offline-template.html   (what `make plots` runs)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import vl_convert

from pathcnn.errors import PathcnnError

# DVC's built-in plot templates are Vega-Lite v5 specs; a v6 library would warn on every plot.
VEGA_LITE_VERSION = "5.21"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script type="text/javascript">
(() => {
{bundle}
})();
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_page(vega_lite_version: str = VEGA_LITE_VERSION) -> str:
    """The page template with the JavaScript inlined; DVC replaces `{plot_divs}` with one div per plot.

    The bundle sets `window.vegaEmbed`, which DVC's per-plot scripts call while the page loads. It runs inside
    a function so its minified top-level names stay out of the global scope those scripts share (`var spec`).
    """
    bundle = vl_convert.javascript_bundle(vl_version=vega_lite_version)
    # Either would break the page: '</script' ends the inline script, DVC replaces its placeholders everywhere.
    clash = re.search(r"</script|\{(?:plot_divs|scripts|refresh_tag)\}", bundle, flags=re.IGNORECASE)
    if clash:
        raise PathcnnError(
            f"vl-convert-python {vl_convert.__version__}: its JavaScript bundle contains {clash.group()!r} and "
            "cannot be inlined in the dvc plots page; pin a version without it in requirements.lock"
        )
    return PAGE.replace("{bundle}", bundle)


def main(argv: list[str] | None = None) -> None:
    """Write the page template to the path given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m pathcnn.plotpage", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the template, e.g. dvc_plots/offline-template.html")
    args = parser.parse_args(argv)
    try:
        page = offline_page()
    except PathcnnError as error:
        raise SystemExit(f"error: {error}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    main()
