"""What the index refuses: a missing row (NotFound), one in the way (Conflict), or a value it
will not store (InvalidValue: a malformed name, an unknown role or source, a bad policy).

The facades map them to their answers (DICOMweb: 404, 409 and 400, in the exception-handler
table of `tessera.dicomweb.app`). A bare ValueError is not among them: it is a bug (500).
"""

from __future__ import annotations


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class InvalidValue(ValueError):
    pass
