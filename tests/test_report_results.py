"""Results out: a signed report goes as HL7 v2 ORU^R01 over MLLP to a real receiver socket,
retried (receiver closing without an answer, then refusing with AE) until acknowledged (AA);
the codec's framing, escaping and acknowledgements on their own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from pydicom.uid import generate_uid

from tessera.hl7.message import Segment, encode, escape, parse, parse_ack, unescape
from tessera.hl7.mllp import END_BLOCK, START_BLOCK, FrameReader, MllpError, frame
from tests.conftest import ServerProcess, free_port
from tests.security_world import instance_bytes, stow


class Receiver:
    """An MLLP receiver on a real socket: answers each connection by the script
    ("close": hang up without an answer; "AE"/"AA": acknowledge with that code)."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.messages: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    message = FrameReader(conn).read()
                except MllpError:
                    continue
                self.messages.append(message)
                step = self.script[min(len(self.messages), len(self.script)) - 1]
                if step == "close":
                    continue
                control_id = parse(message)[0][10]
                ack = encode(
                    [
                        Segment("MSH", ("|", "^~\\&", "EHR", "", "TESSERA", "", "", "", "ACK")),
                        Segment("MSA", (step, control_id, "" if step == "AA" else "not today")),
                    ]
                )
                conn.sendall(frame(ack))

    def close(self) -> None:
        self.sock.close()


def _reports_cli(server: ServerProcess, *args: str) -> dict:
    env = dict(os.environ)
    env.update(TESSERA_DATABASE_URL=server.database_url, TESSERA_DATA_DIR=str(server.data_dir))
    out = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "reports", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def _segments(message: bytes, name: str) -> list[list[str]]:
    return [s for s in parse(message) if s[0] == name]


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    made = Receiver(["close", "AE", "AA"])
    yield made
    made.close()


def test_signed_report_sent_until_acknowledged(server_factory, receiver: Receiver) -> None:
    server = server_factory(
        env_extra={
            "TESSERA_WORKERS": "1",
            "TESSERA_HL7_RESULTS_ENDPOINT": f"127.0.0.1:{receiver.port}",
            "TESSERA_HL7_RESULTS_RECEIVING_APPLICATION": "EHR",
            "TESSERA_HL7_RESULTS_TIMEOUT_SECONDS": "5",
        }
    ).start()
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    assert (
        stow(server.dicomweb, [instance_bytes(study, series, sop, "DOE^JANE", 1)], {}).status_code
        == 200
    )
    api = f"{server.base_url}/api/v1/studies/{study}/reports"
    values = {
        "lv_ejection_fraction": 64.5,
        "cardiac_situs": "solitus",
        "impression": "Normal | no effusion",
    }
    report = httpx.post(api, json={"template": "pediatric-echo", "values": values}).json()
    signed = httpx.post(f"{api}/{report['id']}/sign", headers={"If-Match": '"1"'}, timeout=60)
    assert signed.status_code == 200, signed.text

    deadline = time.time() + 60
    while len(receiver.messages) < 3 and time.time() < deadline:
        time.sleep(0.2)
    assert len(receiver.messages) == 3, server.log()[-3000:]
    time.sleep(4)  # acknowledged: no further attempt
    assert len(receiver.messages) == 3
    shown = _reports_cli(server, "show", study, str(report["id"]), "--json")
    assert shown["results_out"][0]["state"] == "acknowledged"
    assert shown["results_out"][0]["attempts"] == 3
    first, last = receiver.messages[0], receiver.messages[-1]
    assert first == last  # the same message, retried
    msh = _segments(last, "MSH")[0]
    assert (msh[3], msh[5], msh[9], msh[12]) == ("TESSERA", "EHR", "ORU^R01^ORU_R01", "2.5.1")
    pid = _segments(last, "PID")[0]
    assert pid[5] == "DOE^JANE"
    obr = _segments(last, "OBR")[0]
    assert obr[25] == "F" and obr[32] == "anonymous"
    observations = {o[3].split("^")[0]: (o[2], o[5], o[6]) for o in _segments(last, "OBX")}
    assert observations["113014"] == ("ST", study, "")
    assert observations["10230-1"] == ("NM", "64.5", "%^%^UCUM")
    assert observations["SITUS"] == ("CWE", "SOLITUS^Situs solitus^99TESSERA", "")
    assert unescape(observations["121072"][1]) == "Normal | no effusion"

    # An addendum is sent as a corrected result (OBR-25 C), under its own control id.
    amended = httpx.post(
        f"{api}/{report['id']}/addenda",
        json={"text": "Reviewed."},
        headers={"If-Match": '"2"'},
        timeout=60,
    )
    assert amended.status_code == 201, amended.text
    deadline = time.time() + 60
    while len(receiver.messages) < 4 and time.time() < deadline:
        time.sleep(0.2)
    # Once seen in CI: the server logged this message acknowledged, the list held 3.
    assert len(receiver.messages) == 4, (len(receiver.messages), server.log()[-3000:])
    corrected = receiver.messages[3]
    assert _segments(corrected, "OBR")[0][25] == "C"
    assert _segments(corrected, "MSH")[0][10] != msh[10]


def test_results_out_refuses_a_bad_endpoint(server_factory) -> None:
    server = server_factory(env_extra={"TESSERA_HL7_RESULTS_ENDPOINT": "nowhere"})
    with pytest.raises(RuntimeError, match="not host:port"):
        server.start(timeout=30)


def test_mllp_framing_and_escapes() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(5)
        payload = frame(b"MSH|one\r") + frame(b"MSH|two\r")
        for i in range(0, len(payload), 3):  # frames split across reads
            left.sendall(payload[i : i + 3])
        reader = FrameReader(right)
        assert reader.read() == b"MSH|one\r" and reader.read() == b"MSH|two\r"
        left.sendall(b"no start" + END_BLOCK)
        with pytest.raises(MllpError, match="start block"):
            reader.read()
        left.close()
        with pytest.raises(MllpError, match="closed"):
            reader.read()
    assert frame(b"x") == START_BLOCK + b"x" + END_BLOCK
    text = "a|b^c~d\\e&f\nline"
    assert escape(text) == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\.br\\line"
    assert unescape(escape(text)) == text
    ack = parse_ack(b"MSH|^~\\&|EHR||TESSERA\rMSA|AE|T1R2V3|no such patient\r")
    assert (ack.code, ack.control_id, ack.text, ack.accepted) == (
        "AE",
        "T1R2V3",
        "no such patient",
        False,
    )
    with pytest.raises(ValueError, match="acknowledgement"):
        parse_ack(b"PID|1\r")


def test_send_to_a_closed_port_is_an_mllp_error() -> None:
    from tessera.hl7.mllp import send

    with pytest.raises(MllpError, match="127.0.0.1"):
        send("127.0.0.1", free_port(), b"MSH|x\r", timeout=2)
