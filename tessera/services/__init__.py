"""Services shared by the facades: ingest an instance, sweep orphans (more to come:
query, retrieve). DICOMweb and DIMSE call these, so they cannot disagree."""
