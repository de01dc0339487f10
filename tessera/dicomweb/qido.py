"""QIDO-RS (PS3.18 §10.6): not implemented yet (issue 3)."""

from __future__ import annotations

routes: list = []
