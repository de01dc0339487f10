"""HL7 v2 messages as segments of fields, with the standard delimiters (|^~\\&) and escapes."""

from __future__ import annotations

from dataclasses import dataclass

FIELD, COMPONENT, REPETITION, ESCAPE, SUBCOMPONENT = "|", "^", "~", "\\", "&"
ENCODING_CHARACTERS = COMPONENT + REPETITION + ESCAPE + SUBCOMPONENT
SEGMENT_END = "\r"


def escape(text: str) -> str:
    """Escape the delimiters inside a value (HL7 v2 2.7.4); line breaks become \\.br\\."""
    out = []
    for ch in text:
        if ch == ESCAPE:
            out.append("\\E\\")
        elif ch == FIELD:
            out.append("\\F\\")
        elif ch == COMPONENT:
            out.append("\\S\\")
        elif ch == SUBCOMPONENT:
            out.append("\\T\\")
        elif ch == REPETITION:
            out.append("\\R\\")
        elif ch == "\n":
            out.append("\\.br\\")
        elif ch == "\r":
            continue
        else:
            out.append(ch)
    return "".join(out)


def unescape(text: str) -> str:
    table = {"E": ESCAPE, "F": FIELD, "S": COMPONENT, "T": SUBCOMPONENT, "R": REPETITION}
    out, i = [], 0
    while i < len(text):
        if text[i] == ESCAPE:
            end = text.find(ESCAPE, i + 1)
            if end > i:
                code = text[i + 1 : end]
                out.append(table.get(code, "\n" if code == ".br" else ""))
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def component(*parts: str) -> str:
    """A field of components, each escaped (trailing empty components dropped)."""
    values = [escape(part) for part in parts]
    while values and not values[-1]:
        values.pop()
    return COMPONENT.join(values)


@dataclass(frozen=True)
class Segment:
    """One segment: its name and fields 1..n (already escaped/composed)."""

    name: str
    fields: tuple[str, ...]

    def encode(self) -> str:
        if self.name == "MSH":
            # MSH-1 is the field separator itself, MSH-2 the encoding characters.
            return "MSH" + FIELD + ENCODING_CHARACTERS + FIELD + FIELD.join(self.fields[2:])
        return FIELD.join((self.name, *self.fields))


def encode(segments: list[Segment]) -> bytes:
    return (SEGMENT_END.join(s.encode() for s in segments) + SEGMENT_END).encode("utf-8")


def parse(message: bytes) -> list[list[str]]:
    """Segments as lists of raw fields; for MSH, index i is MSH-i (as for other segments)."""
    segments = []
    for line in message.decode("utf-8", "replace").replace("\n", "\r").split(SEGMENT_END):
        if not line:
            continue
        parts = line.split(FIELD)
        if parts[0] == "MSH":
            parts = ["MSH", FIELD, *parts[1:]]
        segments.append(parts)
    return segments


def field_of(segments: list[list[str]], name: str, index: int) -> str:
    for segment in segments:
        if segment[0] == name:
            return segment[index] if index < len(segment) else ""
    return ""


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1: AA / CA accepted; AE / AR / CE / CR refused
    control_id: str  # MSA-2: the message it answers
    text: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def parse_ack(message: bytes) -> Ack:
    segments = parse(message)
    if not segments or segments[0][0] != "MSH" or not any(s[0] == "MSA" for s in segments):
        raise ValueError("not an HL7 acknowledgement (no MSH/MSA)")
    return Ack(
        field_of(segments, "MSA", 1),
        field_of(segments, "MSA", 2),
        unescape(field_of(segments, "MSA", 3) or field_of(segments, "ERR", 8)),
    )
