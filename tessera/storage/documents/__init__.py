"""Documents as DICOM: a PDF, photo, text, office file or video turned into a DICOM object
(Encapsulated PDF, VL Photographic Image, Video Photographic Image) that carries the patient
and study attributes of the study it is attached to. See docs/documents.md.
"""
