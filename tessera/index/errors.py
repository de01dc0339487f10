"""What the index refuses to change: a missing row (NotFound) or one in the way (Conflict).

The facades map them to their answers (DICOMweb: 404 and 409, in the exception-handler
table of `tessera.dicomweb.app`). Malformed values are plain ValueErrors (400).
"""

from __future__ import annotations


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass
