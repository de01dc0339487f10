"""A private PostgreSQL cluster for tests that restart or stop the database server.

The shared PostgreSQL at TESSERA_TEST_PG_URL serves other tests at the same time and must never
be restarted; tests that take the database away start their own cluster (initdb + pg_ctl from
the Debian packages' /usr/lib/postgresql/<version>/bin) on a free port in a temporary folder.
initdb refuses to run as root: as root, the cluster is made and run as the `postgres` system
user (subprocess `user=`), in a folder owned by it; as any other user, as that user.
fsync is off (the tests restart the server, not the machine: what a committed transaction
wrote is in the operating system's cache and survives a server restart).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (with initdb and pg_ctl), if any."""
    found = [
        Path(p).parent
        for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if Path(p).with_name("pg_ctl").exists()
    ]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in path.parent.name.split(".") if x.isdigit())

    return max(found, key=version) if found else None


def why_unavailable() -> str | None:
    """None when a private cluster can be started here, else the reason (a skip message)."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries missing: apt-get install -y postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no 'postgres' user to run initdb as"
    return None


class PrivatePostgres:
    """One cluster: start, stop, restart; URLs for databases in it."""

    def __init__(self, port: int) -> None:
        bin_dir = postgres_bin()
        assert bin_dir is not None
        self.bin = bin_dir
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="tessera-pg-"))
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            [str(self.bin / tool), *args],
            user=self.user,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}{self.server_log()}")

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c fsync=off -c shared_buffers=32MB"
        )
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), "-o", options)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' (roll back sessions, clean shut-down) or 'immediate' (as a
        crash: recovery from the WAL at the next start)."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-D", str(self.data), "-m", mode)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def is_up(self) -> bool:
        engine = create_engine(self.url())
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False
        finally:
            engine.dispose()

    def wait_up(self, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while not self.is_up():
            if time.time() > deadline:
                raise RuntimeError(f"private PostgreSQL did not come up:\n{self.server_log()}")
            time.sleep(0.2)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
