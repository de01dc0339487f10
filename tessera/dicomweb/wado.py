"""WADO-RS and WADO-URI (PS3.18 §10.4, §9): not implemented yet (issue 4)."""

from __future__ import annotations

routes: list = []
