"""The DIMSE gateway: a thin pynetdicom facade over the same ingest, query and retrieve
services as DICOMweb (see docs/dimse.md)."""

from tessera.scp import reactor_checkpoint

# Before any Association exists: every SCU and SCP path of the gateway gets the race fix.
reactor_checkpoint.install()
