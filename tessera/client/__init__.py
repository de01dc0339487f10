"""Clients of a DICOMweb server (Tessera's or any other): the STOW-RS uploader behind
`tessera upload`. They speak HTTP only and share the multipart writer and media types with
the server (tessera/dicomweb/multipart_writer.py, media_type.py)."""
