"""HL7 v2 orders in over MLLP (issue 13 item 7): a real listener on a TCP port, real
clients (the `hl7` package's MLLPClient and raw sockets). ORM^O01 and OMI^O23 new, change
and cancel land in the same order store as the REST API; every message gets an ACK (AA) or
a NAK (AE/AR with the reason in MSA-3 and ERR); truncated frames, a wrong encoding and
missing fields never stop the listener. Security: a sender mapped to tenant B (or to another
source of tenant A) never creates, changes or learns about tenant A's ClinicA orders.
SQLite and PostgreSQL."""

from __future__ import annotations

import socket
import time

import hl7
import pytest
from hl7.client import MLLPClient

from tessera.archive import Archive
from tessera.hl7.listener import Hl7Listener
from tessera.hl7.message import parse_ack
from tessera.hl7.mllp import END_BLOCK, START_BLOCK, FrameReader, frame, send
from tessera.index import hl7_facilities
from tessera.index.changes import read_changes
from tessera.index.sources import add_source
from tessera.index.tenancy import create_tenant
from tessera.scope import full_scope
from tessera.services import orders as o
from tests.conftest import migrated_archive


@pytest.fixture
def world(tmp_path, database_url):  # type: ignore[no-untyped-def]
    archive = migrated_archive(tmp_path / "data", database_url)
    with archive.database.write() as conn:
        tenant_a = archive.default_tenant.id
        clinic_a = add_source(conn, tenant_a, "ClinicA")
        clinic_a2 = add_source(conn, tenant_a, "ClinicA2")
        tenant_b = create_tenant(conn, "other").id
        clinic_b = add_source(conn, tenant_b, "ClinicB")
        hl7_facilities.add_facility(conn, "CLINICA", "", tenant_a, clinic_a)
        hl7_facilities.add_facility(conn, "CLINICA2", "", tenant_a, clinic_a2)
        hl7_facilities.add_facility(conn, "CLINICB", "", tenant_b, clinic_b)
    listener = Hl7Listener(archive, "127.0.0.1", 0).start()
    yield archive, listener.port, tenant_a, tenant_b
    listener.shutdown()
    archive.close()


def orm(
    control: str = "NW",
    accession: str = "ACC1",
    facility: str = "CLINICA",
    control_id: str = "MSG1",
    pid: str = "PID|1||PAT-1^^^HOSP-A&1.2.3&ISO||DOE^JANE^Q^^DR||19800102|F",
    extra: str = "",
    message_type: str = "ORM^O01",
    charset: str = "",
) -> str:
    segments = [
        f"MSH|^~\\&|RIS|{facility}|TESSERA|ARCHIVE|20261201120000||{message_type}|{control_id}"
        f"|P|2.5.1||||||{charset}",
        pid,
        "PV1|1|O||||||1234^HOUSE^GREGORY",
        f"ORC|{control}|PL-{accession}|FL-{accession}||||^^^20261202093000^^S",
        obr(accession),
        "ZDS|1.2.826.0.1.3680043.8.498.1^^Application^DICOM",
    ]
    if extra:
        segments.append(extra)
    return "\r".join(segments) + "\r"


def obr(accession: str) -> str:
    fields = [""] * 35
    fields[1:5] = ["1", f"PL-{accession}", f"FL-{accession}", "CTCHEST^CT Chest^LOCAL"]
    fields[18], fields[19], fields[20], fields[24] = accession, "RP-1", "SPS-1", "CT"
    fields[31], fields[34] = "Cough", "^TECH^TOM"
    return "OBR|" + "|".join(fields[1:])


def exchange(port: int, message: str | bytes) -> hl7.Message:
    """One message over a real MLLP client (the hl7 package's), its ACK parsed."""
    with MLLPClient("127.0.0.1", port) as client:
        reply = client.send_message(message)
    return hl7.parse(reply.decode("utf-8"))


def msa(ack: hl7.Message) -> tuple[str, str, str]:
    return (str(ack["MSA.F1"]), str(ack["MSA.F2"]), ack.unescape(str(ack["MSA.F3"])))


def err_code(ack: hl7.Message) -> str:
    return str(ack.segment("ERR").extract_field(field_num=3, component_num=1))


def orders_of(archive: Archive, tenant_id: int, accession: str) -> list[o.Order]:
    with archive.database.read() as conn:
        return o.search_orders(
            conn, full_scope(tenant_id), o.OrderSearch(accession_number=accession)
        )


def test_new_order_is_created_once_with_its_fields(world) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, _ = world
    ack = exchange(port, orm())
    code, control_id, text = msa(ack)
    assert (code, control_id) == ("AA", "MSG1"), text
    assert str(ack["MSH.F9"]).startswith("ACK")
    [order] = orders_of(archive, tenant_a, "ACC1")
    assert text == f"order {order.id} created"
    assert (order.source, order.status) == ("ClinicA", "SCHEDULED")
    assert (order.patient_id, order.issuer_of_patient_id) == ("PAT-1", "HOSP-A")
    assert order.patient_name == "DOE^JANE^Q^DR"
    assert (str(order.patient_birth_date), order.patient_sex) == ("1980-01-02", "F")
    assert order.referring_physician_name == "HOUSE^GREGORY"
    assert (order.requested_procedure_id, order.requested_procedure_description) == (
        "RP-1",
        "CT Chest",
    )
    assert order.requested_procedure_code_value == "CTCHEST"
    assert (order.priority, order.reason_for_requested_procedure) == ("STAT", "Cough")
    assert order.study_instance_uid == "1.2.826.0.1.3680043.8.498.1"
    [step] = order.steps
    assert (step.scheduled_procedure_step_id, step.modality) == ("SPS-1", "CT")
    assert (str(step.start_date), str(step.start_time)) == ("2026-12-02", "09:30:00")
    assert step.scheduled_performing_physician_name == "TECH^TOM"
    # The same message again (a resend): the same order, acknowledged.
    again = exchange(port, orm(control_id="MSG1-RETRY"))
    assert msa(again) == ("AA", "MSG1-RETRY", f"order {order.id} already exists")
    assert len(orders_of(archive, tenant_a, "ACC1")) == 1
    with archive.database.read() as conn:
        feed = read_changes(conn, full_scope(tenant_a), 0, 100)
    assert [(c.kind, c.detail["order_status"], c.source) for c in feed] == [
        ("order.status_changed", "SCHEDULED", "ClinicA")
    ]


def test_omi_with_two_procedure_steps(world) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, _ = world
    message = "\r".join(
        [
            "MSH|^~\\&|RIS|CLINICA|TESSERA|ARCHIVE|20261201120000||OMI^O23^OMI_O23|OMI1|P|2.5.1"
            "||||||UNICODE UTF-8",
            "PID|1||PAT-2^^^HOSP-A||M\\S\\LLER^ANNA||19700305|F",
            "ORC|NW|PL-9|FL-9",
            "TQ1|1||||||20261203101500||R",
            "OBR|1|PL-9|FL-9|MRHEAD^MR Head^LOCAL",
            "IPC|ACC-OMI|RP-9|2.25.12345|SPS-A|MR||MR1||MRAET1",
            "IPC|ACC-OMI|RP-9|2.25.12345|SPS-B|MR||MR2||MRAET2",
        ]
    )
    code, _, text = msa(exchange(port, message))
    assert code == "AA", text
    [order] = orders_of(archive, tenant_a, "ACC-OMI")
    assert order.patient_name == "M^LLER^ANNA"  # \S\ is a literal '^' in HL7
    assert (order.study_instance_uid, order.requested_procedure_id, order.priority) == (
        "2.25.12345",
        "RP-9",
        "ROUTINE",
    )
    assert [
        (s.scheduled_procedure_step_id, s.scheduled_station_ae_title, str(s.start_time))
        for s in order.steps
    ] == [("SPS-A", "MRAET1", "10:15:00"), ("SPS-B", "MRAET2", "10:15:00")]


def test_change_then_cancel(world) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, _ = world
    assert msa(exchange(port, orm()))[0] == "AA"
    changed_pid = "PID|1||PAT-1^^^HOSP-A||DOE^JANE||19800103|F"
    code, _, text = msa(exchange(port, orm("XO", control_id="MSG2", pid=changed_pid)))
    assert code == "AA", text
    [order] = orders_of(archive, tenant_a, "ACC1")
    assert str(order.patient_birth_date) == "1980-01-03" and order.patient_name == "DOE^JANE"
    # A change may not move the order to another study.
    moved = orm("XO", control_id="MSG3", extra="").replace(
        "1.2.826.0.1.3680043.8.498.1", "2.25.999"
    )
    ack = exchange(port, moved)
    assert msa(ack)[0] == "AE" and "Study Instance UID" in msa(ack)[2]
    code, _, text = msa(exchange(port, orm("CA", control_id="MSG4")))
    assert (code, text) == ("AA", f"order {order.id} cancelled")
    assert msa(exchange(port, orm("CA", control_id="MSG5")))[2] == (
        f"order {order.id} already cancelled"
    )
    # Once cancelled it no longer changes.
    ack = exchange(port, orm("XO", control_id="MSG6", pid=changed_pid))
    assert msa(ack)[0] == "AE" and "CANCELLED" in msa(ack)[2]
    with archive.database.read() as conn:
        history = o.status_history(conn, full_scope(tenant_a), order.id)
    assert [(h["to_status"], h["principal"]) for h in history] == [
        ("SCHEDULED", "hl7:CLINICA"),
        ("CANCELLED", "hl7:CLINICA"),
    ]


def test_change_of_an_order_in_progress_is_refused(world) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, _ = world
    assert msa(exchange(port, orm()))[0] == "AA"
    [order] = orders_of(archive, tenant_a, "ACC1")
    with archive.database.write() as conn:
        o.change_status(conn, full_scope(tenant_a), order.id, "IN_PROGRESS")
    ack = exchange(port, orm("XO", control_id="MSG2"))
    assert msa(ack)[0] == "AE" and "only SCHEDULED orders change" in msa(ack)[2]
    assert err_code(ack) == "207"


@pytest.mark.parametrize(
    ("message", "code", "error", "says"),
    [
        (orm(facility="NOBODY"), "AR", "204", "unknown sending facility 'NOBODY'"),
        (orm(message_type="SIU^S12"), "AR", "200", "SIU^S12 is not accepted"),
        (orm(message_type="ORM^O02"), "AR", "201", "ORM^O02 is not accepted"),
        (orm(control="SC"), "AE", "103", "order control 'SC'"),
        (orm(pid="PID|1"), "AE", "101", "PID-3 or PID-5 is required"),
        (orm(pid="PID|1||PAT-1||DOE^JANE||31/12/1999"), "AE", "102", "patient_birth_date"),
        (orm(pid="PID|1||PAT-1||DOE^JANE|||X"), "AE", "103", "PID-8"),
        (
            orm().replace("ZDS|1.2.826.0.1.3680043.8.498.1", "ZDS|not-a-uid"),
            "AE",
            "102",
            "study_instance_uid",
        ),
        (
            orm().replace("^^^20261202093000^^S", "^^^tomorrow^^S"),
            "AE",
            "102",
            "not a date/time",
        ),
        (orm(charset="KOI8-R"), "AR", "102", "character set 'KOI8-R'"),
        (orm().replace("|MSG1|", "||"), "AR", "101", "MSH-10"),
    ],
    ids=[
        "unknown-facility",
        "scheduling",
        "other-trigger",
        "order-control",
        "no-patient",
        "birth-date",
        "sex",
        "study-uid",
        "start",
        "charset",
        "no-control-id",
    ],
)
def test_bad_messages_are_refused_with_the_reason(world, message, code, error, says) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, tenant_b = world
    ack = exchange(port, message)
    got, _, text = msa(ack)
    assert got == code and says in ack.unescape(str(ack["ERR.F8"])), (got, text)
    assert err_code(ack) == error
    assert orders_of(archive, tenant_a, "ACC1") == [] and orders_of(archive, tenant_b, "ACC1") == []


def test_missing_accession_names_the_field(world) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, _ = world
    message = "\r".join(
        [
            "MSH|^~\\&|RIS|CLINICA|TESSERA|ARCHIVE|20261201120000||ORM^O01|M7|P|2.3",
            "PID|1||PAT-1||DOE^JANE",
            "ORC|NW",
            "OBR|1|||CT^CT",
        ]
    )
    ack = exchange(port, message)
    assert msa(ack)[0] == "AE" and "no accession number" in msa(ack)[2]
    assert str(ack.segment("ERR")[2]) == "OBR^1^18"


def test_the_listener_keeps_serving_after_broken_input(world) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, _ = world
    # Truncated: a start block and half a message, then the peer goes away.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(START_BLOCK + orm().encode()[:60])
    # Bytes that are not UTF-8 in a message that says it is.
    latin = orm(pid="PID|1||PAT-1||DÜRR^HANS").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(frame(latin))
        ack = parse_ack(FrameReader(sock).read())
        assert ack.code == "AR" and "not valid UTF-8" in ack.text
        # Not HL7 at all, on the same connection: answered, and the connection stays open.
        sock.sendall(frame(b"hello, is this the RIS?"))
        ack = parse_ack(FrameReader(sock).read())
        assert ack.code == "AR" and "not an HL7 v2 message" in ack.text
        # A frame without its start block ends this connection only.
        sock.sendall(b"garbage" + END_BLOCK)
        assert sock.recv(100) == b""
    # The same bytes declared as ISO 8859-1 are fine.
    ack = parse_ack(
        send(
            "127.0.0.1",
            port,
            orm(charset="8859/1", pid="PID|1||PAT-1||DÜRR^HANS").encode("latin-1"),
        )
    )
    assert ack.code == "AA", ack.text
    [order] = orders_of(archive, tenant_a, "ACC1")
    assert order.patient_name == "DÜRR^HANS"


def test_a_sender_never_touches_or_sees_another_tenants_or_sources_orders(world) -> None:  # type: ignore[no-untyped-def]
    archive, port, tenant_a, tenant_b = world
    assert msa(exchange(port, orm()))[0] == "AA"
    [order_a] = orders_of(archive, tenant_a, "ACC1")
    for facility in ("CLINICB", "CLINICA2"):
        # Change and cancel of ClinicA's accession: as if it did not exist.
        for control in ("XO", "CA"):
            ack = exchange(port, orm(control, facility=facility, control_id=f"{facility}{control}"))
            code, _, text = msa(ack)
            assert (code, text) == ("AE", "no order with accession number 'ACC1'")
            assert f"order {order_a.id}" not in str(ack)
    [still] = orders_of(archive, tenant_a, "ACC1")
    assert (still.status, still.updated_at) == ("SCHEDULED", order_a.updated_at)
    # A new order with the same accession number is the sender's own, in its own place.
    ack = exchange(port, orm(facility="CLINICB", control_id="B-NW"))
    [order_b] = orders_of(archive, tenant_b, "ACC1")
    assert msa(ack) == ("AA", "B-NW", f"order {order_b.id} created")
    assert order_b.source == "ClinicB" and order_b.id != order_a.id
    # Its own study UID may not take tenant A's: a tenant has its own UIDs, so this works
    # without revealing anything; but a second ClinicA2 order with A's UID conflicts within
    # tenant A and is refused without naming the other order.
    ack = exchange(port, orm(facility="CLINICA2", control_id="A2-NW"))
    assert msa(ack)[0] == "AE" and f"order {order_a.id}" not in str(ack)
    assert orders_of(archive, tenant_a, "ACC1") == [still]
    with archive.database.read() as conn:
        feed_b = read_changes(conn, full_scope(tenant_b), 0, 100)
    assert [c.detail["order_id"] for c in feed_b] == [order_b.id]


def test_tessera_serve_runs_the_listener_and_the_cli_maps_senders(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from tests.conftest import ServerProcess, free_port

    data_dir = tmp_path / "serve-data"
    hl7_port = free_port()
    server = ServerProcess(
        data_dir, database_url, env_extra={"TESSERA_HL7_LISTEN_PORT": str(hl7_port)}
    ).start()
    try:
        store = ["--data-dir", str(data_dir), "--database-url", database_url]

        def cli(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "tessera.cli", "hl7", "facilities", *args, *store],
                capture_output=True,
                text=True,
                timeout=120,
            )

        # Not mapped yet: refused, and nothing is created.
        assert parse_ack(send("127.0.0.1", hl7_port, orm().encode())).code == "AR"
        added = cli("add", "CLINICA", "--tenant", "default", "--source", "default")
        assert added.returncode == 0, added.stderr
        assert cli("add", "CLINICA", "--source", "default").returncode == 2  # taken
        assert cli("add", "X", "--source", "nowhere").returncode == 2
        assert '"facility": "CLINICA"' in cli("list").stdout
        ack = parse_ack(send("127.0.0.1", hl7_port, orm().encode()))
        assert ack.code == "AA", ack.text
        assert cli("remove", "CLINICA").returncode == 0
        assert parse_ack(send("127.0.0.1", hl7_port, orm().encode())).code == "AR"
    finally:
        server.stop()
    # The listener stopped with the server.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", hl7_port), timeout=2).close()


def test_connections_beyond_the_limit_are_closed_and_others_served(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tessera.hl7 import listener

    archive, _, _, _ = world
    monkeypatch.setattr(listener, "MAX_CONNECTIONS", 2)
    small = listener.Hl7Listener(archive, "127.0.0.1", 0).start()
    try:
        held = [socket.create_connection(("127.0.0.1", small.port)) for _ in range(2)]
        for sock in held:  # both are being served
            sock.sendall(frame(orm(control_id="HELD").encode()))
            assert parse_ack(FrameReader(sock).read()).code == "AA"
        with socket.create_connection(("127.0.0.1", small.port), timeout=10) as third:
            assert third.recv(100) == b""  # closed on arrival
        held.pop().close()
        time.sleep(0.5)
        assert (
            parse_ack(send("127.0.0.1", small.port, orm(control_id="NEXT").encode())).code == "AA"
        )
        for sock in held:
            sock.close()
    finally:
        small.shutdown()
