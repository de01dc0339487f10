"""`tessera orders` on the local index (SQLite and PostgreSQL): create from JSON on standard
input (idempotent), list, show, status changes, history, and clear errors with exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def orders(
    database_url: str, data_dir: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess:
    env = dict(os.environ, TESSERA_DATABASE_URL=database_url, TESSERA_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "orders", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_orders_cli(database_url: str, tmp_path: Path) -> None:
    order = {
        "accession_number": "CLI1",
        "patient_name": "Doe^Jane",
        "patient_id": "P1",
        "scheduled_procedure_steps": [{"start": "2026-12-01T08:00", "modality": "MR"}],
    }
    env = dict(os.environ, TESSERA_DATABASE_URL=database_url, TESSERA_DATA_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-m", "tessera.cli", "migrate"], env=env, check=True)
    created = orders(database_url, tmp_path, "create", stdin=json.dumps(order))
    assert created.returncode == 0, created.stderr
    first = json.loads(created.stdout)
    assert first["status"] == "SCHEDULED" and first["source"] == "default"
    again = json.loads(orders(database_url, tmp_path, "create", stdin=json.dumps(order)).stdout)
    assert again["id"] == first["id"]
    listed = json.loads(orders(database_url, tmp_path, "list", "--accession", "CLI1").stdout)
    assert [x["id"] for x in listed] == [first["id"]]
    shown = json.loads(orders(database_url, tmp_path, "show", str(first["id"])).stdout)
    assert shown["scheduled_procedure_steps"][0]["modality"] == "MR"
    moved = orders(database_url, tmp_path, "status", str(first["id"]), "in_progress")
    assert json.loads(moved.stdout)["status"] == "IN_PROGRESS"
    cancelled = orders(database_url, tmp_path, "cancel", str(first["id"]), "--reason", "test")
    assert json.loads(cancelled.stdout)["status"] == "CANCELLED"
    history = json.loads(orders(database_url, tmp_path, "history", str(first["id"])).stdout)
    assert [h["to_status"] for h in history] == ["SCHEDULED", "IN_PROGRESS", "CANCELLED"]
    assert history[-1]["principal"] == "cli" and history[-1]["reason"] == "test"

    for args, stdin, code, message in (
        (("show", "4242"), "", 1, "no order 4242"),
        (("cancel", str(first["id"])), "", 2, "cannot become CANCELLED"),
        (("create",), "{not json", 2, "not JSON"),
        (("create",), json.dumps({"accession_number": "X"}), 2, "patient_id"),
        (("show",), "", 2, "needs an order ID"),
        (("list", "--tenant", "nope"), "", 2, "unknown tenant"),
    ):
        result = orders(database_url, tmp_path, *args, stdin=stdin)
        assert result.returncode == code and message in result.stderr, (args, result.stderr)
