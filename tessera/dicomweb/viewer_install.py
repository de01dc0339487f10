"""`tessera viewer install`: fetch the pinned prebuilt OHIF viewer to where
`tessera serve --viewer` (no PATH) looks for it.

The pin (package, version, integrity) and the fetch are conformance/ohif's, the same that CI
and the OHIF conformance test use (`package.json` and `install.sh --viewer-only`): one pin,
one download recipe. So the command works from a source checkout (the README's
`pip install -e .`), where that folder is; the viewer lands in
conformance/ohif/ohif-app/<version>/dist. Installing again is a no-op (install.sh checks its
`.complete` marker), so nothing is downloaded twice.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

# `--viewer` without a PATH (or TESSERA_VIEWER=installed): the viewer this command installs.
INSTALLED = "installed"
OHIF_DIR = Path(__file__).resolve().parents[2] / "conformance" / "ohif"


class ViewerNotInstalled(ValueError):
    """The installed viewer was asked for, and is not there (or cannot be installed here)."""


def pinned_version() -> str:
    """The pinned @ohif/app version (conformance/ohif/package.json)."""
    manifest = OHIF_DIR / "package.json"
    if not manifest.is_file():
        raise ViewerNotInstalled(
            f"{manifest} is missing: `tessera viewer install` works from a source checkout "
            "(pip install -e .); elsewhere give --viewer the path of an OHIF dist/ folder"
        )
    return str(json.loads(manifest.read_text())["ohif"]["version"])


def installed_dist() -> Path:
    """Where `tessera viewer install` puts the pinned viewer's dist/ folder."""
    return OHIF_DIR / "ohif-app" / pinned_version() / "dist"


def viewer_folder(setting: str) -> Path:
    """The folder `--viewer`/TESSERA_VIEWER names: a path, or `installed`."""
    if setting != INSTALLED:
        return Path(setting)
    dist = installed_dist()
    if not (dist.parent / ".complete").is_file():
        raise ViewerNotInstalled(f"no viewer at {dist}: run `tessera viewer install` first")
    return dist


def install() -> Path:
    """Fetch the pinned viewer unless it is already there; its dist/ folder."""
    pinned_version()  # a clear error outside a source checkout
    for tool in ("npm", "node", "openssl"):
        if shutil.which(tool) is None:
            raise ViewerNotInstalled(
                f"`tessera viewer install` needs {tool} (e.g. apt-get install nodejs npm)"
            )
    done = subprocess.run(
        ["bash", str(OHIF_DIR / "install.sh"), "--viewer-only"],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ViewerNotInstalled(f"install.sh failed (exit {done.returncode})")
    dist = Path(done.stdout.strip().splitlines()[-1])
    if dist.resolve() != installed_dist().resolve():
        raise ViewerNotInstalled(f"install.sh put the viewer at {dist}, not {installed_dist()}")
    return dist


def cmd_viewer(args: argparse.Namespace) -> int:
    try:
        dist = install() if args.action == "install" else viewer_folder(INSTALLED)
    except ViewerNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(dist)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    viewer = sub.add_parser(
        "viewer", help="install the pinned OHIF viewer that `tessera serve --viewer` serves"
    )
    viewer.add_argument(
        "action",
        choices=["install", "path"],
        help="install: fetch it (a no-op when present); path: print where it is installed",
    )
    viewer.set_defaults(func=cmd_viewer)
