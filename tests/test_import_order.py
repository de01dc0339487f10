"""Every index module imports on its own, first, in a fresh interpreter.

The index models register their tables on one Base from several modules (`models.py` imports
the others at its end), so an import circle through them only shows when a particular module
happens to be imported first (e.g. `tessera.index.orders` before `tessera.index.models` once
failed with "cannot import name 'now' from partially initialized module"). The server's own
import order hides such a circle; a script or a new entry point meets it.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tessera

INDEX = Path(tessera.__file__).parent / "index"
MODULES = sorted(f"tessera.index.{path.stem}" for path in INDEX.glob("*.py"))


def _import_alone(module: str) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    return module, done.returncode, done.stderr[-2000:]


def test_each_index_module_imports_first() -> None:
    assert len(MODULES) > 20
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(_import_alone, MODULES))
    failed = [f"{module}:\n{err}" for module, code, err in results if code != 0]
    assert not failed, "\n".join(failed)
