"""Bad input over HTTP answers 4xx (or a per-instance failure in STOW-RS), never 500, and an
error answer leaves the kept-alive connection usable for the client's next request."""

from __future__ import annotations

import httpx
import pydicom
import pytest

from tessera import synthetic
from tessera.client.stow import request_content_type
from tessera.dicomweb import multipart_writer
from tessera.services import failure_reasons

COLUMNS_US = b"\x28\x00\x11\x00US\x02\x00"


def _stow(client: httpx.Client, root: str, parts: list[bytes], **headers: str) -> httpx.Response:
    boundary = multipart_writer.new_boundary()
    return client.post(
        f"{root}/studies",
        content=multipart_writer.body(boundary, parts),
        headers={"Content-Type": request_content_type(boundary), **headers},
    )


def _three_instances(bad_vr: bytes) -> list[bytes]:
    """Three CT instances of one series; the middle one's Columns (0028,0011) is sent with
    another VR and its 2-byte value (explicit VR little endian)."""
    study = synthetic.StudySpec()
    series_uid = pydicom.uid.generate_uid()
    parts = [synthetic.ct_image(study, series_uid, n, rows=8, columns=8) for n in (1, 2, 3)]
    assert parts[1].count(COLUMNS_US) == 1
    parts[1] = parts[1].replace(COLUMNS_US, b"\x28\x00\x11\x00" + bad_vr + b"\x02\x00")
    return parts


@pytest.mark.parametrize("bad_vr", [b"UL", b"XX", b"FD"])
def test_stow_middle_part_with_wrong_vr_fails_alone(server, bad_vr: bytes) -> None:  # type: ignore[no-untyped-def]
    parts = _three_instances(bad_vr)
    uids = [
        str(pydicom.dcmread(pydicom.filebase.DicomBytesIO(part)).SOPInstanceUID)
        for part in parts[::2]
    ]
    bad_uid = str(
        pydicom.dcmread(
            pydicom.filebase.DicomBytesIO(parts[1]), stop_before_pixels=True
        ).SOPInstanceUID
    )
    with httpx.Client() as client:
        response = _stow(client, server.dicomweb, parts)
        assert response.status_code == 202, response.text
        body = response.json()
        stored = [item["00081155"]["Value"][0] for item in body["00081199"]["Value"]]
        assert stored == uids
        (failed,) = body["00081198"]["Value"]
        assert failed["00081155"]["Value"] == [bad_uid]
        assert failed["00081197"]["Value"] == [failure_reasons.CANNOT_UNDERSTAND]
        assert "(0028,0011)" in failed["00000902"]["Value"][0]
        # The good instances are stored and findable; the bad one is not.
        found = client.get(f"{server.dicomweb}/instances", params={"includefield": "00080018"})
        assert found.status_code == 200
        assert sorted(i["00080018"]["Value"][0] for i in found.json()) == sorted(uids)


def test_c_store_refuses_the_same_bytes(server_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import CTImageStorage

    from tests.dimse_support import SERVER_AET, add_peer, start_dimse_server

    _config.STORE_SEND_CHUNKED_DATASET = True
    server = start_dimse_server(server_factory)
    add_peer(server, "BADVRSCU")
    parts = _three_instances(b"UL")
    ae = AE(ae_title="BADVRSCU")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", server.dimse_port, ae_title=SERVER_AET)
    assert assoc.is_established
    statuses = []
    for index, part in enumerate(parts):
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(part)
        statuses.append(int(assoc.send_c_store(path).Status))
    assoc.release()
    assert statuses == [0, failure_reasons.CANNOT_UNDERSTAND, 0]


LEVEL_PATHS = [
    "/studies",
    "/series",
    "/instances",
    "/studies/1.2.3/series",
    "/studies/1.2.3/instances",
    "/studies/1.2.3/series/1.2.4/instances",
]
EMPTY_LISTS = ["%5C", ",", "%2C", "%5C%5C", "%20%5C%20"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # parsing: DB-independent
def test_qido_empty_value_lists_and_huge_numbers_answer_400(server) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client() as client:
        for path in LEVEL_PATHS:
            for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "0020000D"):
                for value in EMPTY_LISTS:
                    response = client.get(f"{server.dicomweb}{path}?{key}={value}")
                    assert response.status_code == 400, (path, key, value, response.text)
                    assert key in response.json()["detail"]
        for key in ("SOPClassesInStudy", "ModalitiesInStudy"):
            response = client.get(f"{server.dicomweb}/studies?{key}=%5C")
            assert response.status_code == 400, response.text
            assert "no value" in response.json()["detail"]
        for name in ("offset", "limit"):
            response = client.get(f"{server.dicomweb}/studies?{name}=9223372036854775808")
            assert response.status_code == 400, response.text
            assert name in response.json()["detail"]
            assert (
                client.get(f"{server.dicomweb}/studies?{name}=9223372036854775807").status_code
                == 200
            )
        for key, value in (
            ("SeriesNumber", "2147483648"),
            ("InstanceNumber", "1%5C99999999999999999999"),
        ):
            path = "/series" if key == "SeriesNumber" else "/instances"
            response = client.get(f"{server.dicomweb}{path}?{key}={value}")
            assert response.status_code == 400, response.text
            assert "outside the range of VR IS" in response.json()["detail"]


def _errors_then_success(server) -> list[tuple[str, int, int]]:  # type: ignore[no-untyped-def]
    """Each error answer, then a good request on the same connection: (what, error status,
    status of the next request). The connection must be the same one (no reconnect)."""
    study = synthetic.StudySpec()
    instance = synthetic.ct_image(study, pydicom.uid.generate_uid(), 1, rows=8, columns=8)
    changed = instance.replace(b"DOE^JANE", b"DOE^JOHN")
    root = server.dicomweb
    results = []
    sockets = set()

    def remember(response: httpx.Response) -> None:
        # The client's own address and port: a new connection has another port.
        sockets.add(client_address(response))

    with httpx.Client(timeout=30, event_hooks={"response": [remember]}) as client:
        assert _stow(client, root, [instance]).status_code == 200
        errors = {
            "GET 400": lambda: client.get(f"{root}/studies?limit=x"),
            "GET 400 empty UID list": lambda: client.get(f"{root}/studies?StudyInstanceUID=%5C"),
            "GET 404": lambda: client.get(f"{root}/studies/1.2.3/metadata"),
            "GET 406": lambda: client.get(
                f"{root}/studies/{study.study_instance_uid}", headers={"Accept": "text/html"}
            ),
            "POST 400": lambda: client.post(
                f"{root}/studies",
                content=b"x" * 3_000_000,
                headers={"Content-Type": request_content_type("b")},
            ),
            "POST 415": lambda: client.post(
                f"{root}/studies", content=instance * 50, headers={"Content-Type": "text/plain"}
            ),
            "POST 409": lambda: _stow(client, root, [changed]),
        }
        for what, request in errors.items():
            error = request()
            following = client.get(f"{root}/studies")
            results.append((what, error.status_code, following.status_code))
    assert len(sockets) == 1, f"the client reconnected {len(sockets) - 1} time(s)"
    return results


def test_error_answers_keep_the_connection_alive(server) -> None:  # type: ignore[no-untyped-def]
    results = _errors_then_success(server)
    expected = [int(what.split()[1]) for what, _, _ in results]
    assert [status for _, status, _ in results] == expected, results
    assert all(following == 200 for _, _, following in results), results
    assert server.alive()


def client_address(response: httpx.Response) -> tuple | str:
    """The client's address and port of the connection that carried `response` (a new
    connection has another port); 'closed' once the server has closed it."""
    try:
        return response.extensions["network_stream"].get_extra_info("client_addr")
    except OSError:
        return f"closed {id(response)}"
