"""Settings: defaults give a working embedded server; TESSERA_* variables and an
optional TOML file (TESSERA_CONFIG) override them; command-line flags override both."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "TESSERA_"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("./data")
    # Empty means "SQLite inside data_dir".
    database_url: str = ""
    # A STOW-RS request body larger than this is refused with 413.
    max_request_bytes: int = 8 * 1024**3
    # Orphan blobs and stale temporary files older than this are swept; younger ones may
    # belong to an upload another worker is still indexing.
    orphan_grace_seconds: int = 600
    # How often the sweeper runs while the server is up (0 = only at start).
    sweep_interval_seconds: int = 3600
    log_level: str = "INFO"
    log_format: str = "json"
    # QIDO-RS / C-FIND: most results in one response (more: a Warning header, page on).
    qido_max_results: int = 10_000
    # DIMSE listener (0 disables it in `tessera serve`); the AE title names the default tenant.
    dimse_port: int = 11112
    dimse_aet: str = "TESSERA"
    # Let AEs that are not registered peers associate (read and store in the called tenant).
    dimse_accept_unknown: bool = False
    # More concurrent associations than this are rejected (A-ASSOCIATE-RJ, transient).
    dimse_max_associations: int = 16
    # TLS for the DIMSE listener: both paths set turns it on; with a CA file, peers must
    # present a certificate it signed.
    dimse_tls_cert: str = ""
    dimse_tls_key: str = ""
    dimse_tls_ca: str = ""
    # "Study complete" (order -> IMAGES_READY) after this many seconds without a new instance
    # of the order's study; the worker checks every study_complete_interval_seconds (0: off).
    study_complete_quiet_seconds: int = 60
    study_complete_interval_seconds: int = 5
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # A prebuilt OHIF viewer (its dist/ folder, or the @ohif/app package holding it) to serve
    # at /viewer/, pointed at the DICOMweb root; empty = no viewer.
    viewer: str = ""
    # HTTP worker processes; ingest and rendering are CPU bound and Python has one GIL per process.
    workers: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 4)))
    # Anonymous requests: "auto" serves them (full access to the default tenant) only when
    # the server listens on a loopback address; "off" never does (docs/accounts.md).
    anonymous: str = "auto"
    # Lifetime of a bearer token issued by POST /api/v1/login.
    session_ttl_seconds: int = 8 * 3600
    # Optional OpenID Connect: bearer JWTs signed by this issuer's keys are accepted.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_jwks_url: str = ""
    oidc_username_claim: str = "preferred_username"
    oidc_tenant_claim: str = "tessera_tenant"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def spool_dir(self) -> Path:
        """Uploads are spooled here; on the blob store's file system so a rename stores them."""
        return self.data_dir / "blobs" / ".spool"


def _coerce(name: str, raw: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("int",):
        return int(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if kind == "Path":
        return Path(raw)
    if kind.startswith("tuple"):
        if isinstance(raw, str):
            return tuple(v.strip() for v in raw.split(",") if v.strip())
        return tuple(raw)
    return str(raw)


def load_settings(**overrides: Any) -> Settings:
    """Defaults < TOML file (TESSERA_CONFIG) < TESSERA_* environment < explicit overrides."""
    values: dict[str, Any] = {}
    names = {f.name for f in fields(Settings)}
    config_path = os.environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        with open(config_path, "rb") as fh:
            for key, raw in tomllib.load(fh).items():
                key = key.replace("-", "_")
                if key not in names:
                    raise ValueError(f"unknown setting {key!r} in {config_path}")
                values[key] = _coerce(key, raw)
    for name in names:
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw)
    for name, raw in overrides.items():
        if raw is not None:
            values[name] = _coerce(name, raw)
    return replace(Settings(), **values)


def export_settings(settings: Settings) -> None:
    """Put resolved settings into TESSERA_* variables (for worker processes)."""
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, tuple):
            value = ",".join(value)
        os.environ[ENV_PREFIX + f.name.upper()] = str(value)
