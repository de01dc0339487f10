"""C-ECHO, association policy and C-STORE against a real `tessera serve`, with dcmtk."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

from tests.conftest import dicom_testdata_files, index_rows
from tests.dimse_support import (
    SERVER_AET,
    STORESCU_PROPOSE,
    add_peer,
    copy_files,
    dcmtk,
    run,
    start_dimse_server,
    transfer_syntax_of,
)
from tests.test_stow_testdata import NOT_STORABLE

# C-STORE also into a real S3-compatible object store (SeaweedFS).
BLOB_STORES = ("filesystem", "s3")


def echo(port: int, calling: str, called: str = SERVER_AET, *extra: str):  # type: ignore[no-untyped-def]
    return run([dcmtk("echoscu"), *extra, "-aet", calling, "-aec", called, "127.0.0.1", str(port)])


def test_echo_and_association_policy(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory)
    port = server.dimse_port
    add_peer(server, "MODALITY1")

    assert echo(port, "MODALITY1").returncode == 0
    unknown_calling = echo(port, "STRANGER")
    assert unknown_calling.returncode != 0
    assert "Calling AE Title Not Recognized" in unknown_calling.stderr + unknown_calling.stdout
    unknown_called = echo(port, "MODALITY1", "NOSUCHAE")
    assert unknown_called.returncode != 0
    assert "Called AE Title Not Recognized" in unknown_called.stderr + unknown_called.stdout

    # A second AE title for the same tenant; a peer removed is rejected again.
    from tests.dimse_support import tessera_cli

    tessera_cli(server, "ae-titles", "add", "ARCHIVE2")
    assert echo(port, "MODALITY1", "ARCHIVE2").returncode == 0
    tessera_cli(server, "peers", "remove", "MODALITY1")
    assert echo(port, "MODALITY1").returncode != 0
    listed = tessera_cli(server, "ae-titles", "list").stdout
    assert "ARCHIVE2" in listed and "TESSERA" in listed
    assert server.alive()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # DB-independent
def test_accept_unknown_calling_ae_when_configured(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory, TESSERA_DIMSE_ACCEPT_UNKNOWN="true")
    assert echo(server.dimse_port, "ANYONE").returncode == 0
    assert echo(server.dimse_port, "ANYONE", "NOSUCHAE").returncode != 0


def _storable_testdata() -> dict[str, list[Path]]:
    """pydicom's and pydicom-data's storable files, grouped by transfer syntax."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in dicom_testdata_files():
        if path.name in NOT_STORABLE:
            continue
        syntax = transfer_syntax_of(path)
        if syntax in STORESCU_PROPOSE:
            groups[syntax].append(path)
    return groups


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PG: other DIMSE tests
def test_storescu_folder_with_compressed_files(server_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = start_dimse_server(server_factory)
    server_cli = server  # the peer labels its C-STOREs with its own source
    from tests.dimse_support import tessera_cli

    tessera_cli(server_cli, "sources", "add", "ClinicA")
    add_peer(server, "STORESCU", "--source", "ClinicA")

    groups = _storable_testdata()
    assert len(groups) >= 8, sorted(groups)
    sent: dict[str, list[Path]] = defaultdict(list)
    outputs: list[str] = []
    # Compressed first: test files share SOP Instance UIDs across syntaxes, the first stays.
    uncompressed = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
    for syntax, paths in sorted(groups.items(), key=lambda kv: (kv[0] in uncompressed, kv[0])):
        folder = copy_files(paths, tmp_path / "send" / syntax)
        originals = dict(zip(folder, paths, strict=True))
        # dcmtk refuses a few odd files up front ("F: ... in file: X"): leave those out.
        for _attempt in range(10):
            result = run(
                [
                    dcmtk("storescu"),
                    "-v",
                    "-nh",
                    "-R",
                    STORESCU_PROPOSE[syntax],
                    "-aet",
                    "STORESCU",
                    "-aec",
                    SERVER_AET,
                    "127.0.0.1",
                    str(server.dimse_port),
                    *map(str, folder),
                ]
            )
            output = result.stdout + result.stderr
            refused = [f for f in folder if "F: " in output and f"file: {f}" in output]
            if not refused:
                break
            folder = [f for f in folder if f not in refused]
        outputs.append(output)
        for copy in folder:
            if f"file: {copy}, ignoring file" in output:  # dcmtk cannot read it
                continue
            path = originals[copy]
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            sent[uid].append(path)

    rows = index_rows(
        server.database_url,
        "SELECT i.sop_instance_uid, i.transfer_syntax_uid, i.blob_key, s.name AS source "
        "FROM instance i JOIN source s ON s.id = i.source_pk",
    )
    stored = {row.sop_instance_uid: row for row in rows}
    # Every distinct SOP Instance UID sent is stored once (same UID, other bytes: 0x0111).
    assert set(stored) == set(sent), "\n".join(outputs)
    assert {row.source for row in rows} == {"ClinicA"}
    for uid, row in stored.items():
        # dcmtk re-encodes what it sends (defined sequence lengths, no trailing padding), so
        # compare what it cannot change: the pixel data (byte identity of the store path
        # itself is tested with raw sends in test_dimse_bad_input.py).
        stored_dataset = pydicom.dcmread(io.BytesIO(server.read_blob(row.blob_key)))
        originals = [pydicom.dcmread(path) for path in sent[uid]]
        assert any(
            stored_dataset.get("PixelData") == original.get("PixelData")
            and stored_dataset.SOPClassUID == original.SOPClassUID
            for original in originals
        ), uid
    # Compressed syntaxes arrive and are stored as such.
    stored_syntaxes = {row.transfer_syntax_uid for row in rows}
    assert {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"} <= (
        stored_syntaxes
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # DB-independent
def test_tessera_scp_runs_the_listener_alone(server_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tessera scp` (scale-out): DIMSE only, over the same index and blob store."""
    import os
    import subprocess
    import sys

    from tests.conftest import free_port
    from tests.dimse_support import wait_port

    server = server_factory()  # not started: only its data folder and database are used
    port = free_port()
    env = dict(
        os.environ,
        TESSERA_DATA_DIR=str(server.data_dir),
        TESSERA_DATABASE_URL=server.database_url,
        TESSERA_DIMSE_ACCEPT_UNKNOWN="true",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tessera.cli",
            "scp",
            "--dimse-port",
            str(port),
            "--dimse-aet",
            "SCALEOUT",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout=30)
        assert echo(port, "ANYONE", "SCALEOUT").returncode == 0
        assert echo(port, "ANYONE", "TESSERA").returncode != 0
    finally:
        process.terminate()
        process.wait(15)
