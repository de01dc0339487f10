"""How the gateway names itself on the wire and in the files it writes."""

from __future__ import annotations

from tessera import __version__

# A UUID-derived UID (PS3.5 B.2), fixed for Tessera's implementation.
IMPLEMENTATION_CLASS_UID = "2.25.17457532033799425888922840085178709364"
IMPLEMENTATION_VERSION_NAME = f"TESSERA_{__version__}"[:16]
