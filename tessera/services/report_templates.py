"""Report templates: JSON documents naming fields (text, number with unit and range, choice)
with optional codes, and the validation of a report's values against them.

A template document::

    {"name": "pediatric-echo", "title": "...",
     "document_code": {"value": "...", "scheme": "...", "meaning": "..."},
     "fields": [{"name": "lv_ejection_fraction", "label": "LV ejection fraction",
                 "type": "number", "unit": {code}, "min": 0, "max": 100, "required": true,
                 "code": {code}},
                {"name": "cardiac_situs", "type": "choice",
                 "choices": [{"value": "solitus", "label": "...", "code": {code}}]}]}

The shipped templates are the JSON files beside this module; a tenant's administrator adds
its own (stored in the index). A report without a template holds free-text `sections`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import orjson

from tessera.index.errors import InvalidValue

BUILTIN_DIR = Path(__file__).parent / "report_templates"
NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
FIELD_TYPES = ("text", "number", "choice")
MAX_TEXT = 65_536

# Free-text sections of a report without a template, with the DCM concept each is stored as.
SECTIONS: dict[str, dict[str, str]] = {
    "history": {"value": "121060", "scheme": "DCM", "meaning": "History"},
    "procedure": {"value": "121064", "scheme": "DCM", "meaning": "Current Procedure Descriptions"},
    "findings": {"value": "121070", "scheme": "DCM", "meaning": "Findings"},
    "impression": {"value": "121072", "scheme": "DCM", "meaning": "Impressions"},
    "recommendations": {"value": "121074", "scheme": "DCM", "meaning": "Recommendations"},
    "conclusions": {"value": "121076", "scheme": "DCM", "meaning": "Conclusions"},
}
SECTION_TITLES = {
    "history": "Clinical information",
    "procedure": "Technique",
    "findings": "Findings",
    "impression": "Impression",
    "recommendations": "Recommendations",
    "conclusions": "Conclusions",
}
FREE_TEXT_DOCUMENT_CODE = {
    "value": "18748-4",
    "scheme": "LN",
    "meaning": "Diagnostic imaging study",
}


class InvalidReport(InvalidValue):
    """A report's content (or a template document) is not acceptable; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: str
    required: bool
    code: dict | None
    unit: dict | None
    minimum: float | None
    maximum: float | None
    choices: tuple[dict, ...]

    def choice(self, value: str) -> dict:
        return next(c for c in self.choices if c["value"] == value)


@dataclass(frozen=True)
class Template:
    name: str
    title: str
    document_code: dict
    fields: tuple[Field, ...]
    builtin: bool
    document: dict

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def _code(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidReport(where, "a code is an object with value, scheme and meaning")
    limits = {"value": 16, "scheme": 16, "meaning": 64}
    for key, limit in limits.items():
        text = value.get(key)
        if not isinstance(text, str) or not 0 < len(text) <= limit or "\\" in text:
            raise InvalidReport(f"{where}.{key}", f"must be 1-{limit} characters, no backslash")
    return {key: value[key] for key in limits}


def parse_template(document: object, builtin: bool = False) -> Template:
    """Check a template document; raises InvalidReport naming the bad part."""
    if not isinstance(document, dict):
        raise InvalidReport("template", "must be a JSON object")
    name = document.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidReport("name", "1-64 letters, digits, '.', '_' or '-'")
    title = document.get("title", name)
    if not isinstance(title, str) or not 0 < len(title) <= 64:
        raise InvalidReport("title", "must be 1-64 characters")
    document_code = _code(document.get("document_code", FREE_TEXT_DOCUMENT_CODE), "document_code")
    raw_fields = document.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise InvalidReport("fields", "must be a non-empty list")
    fields: list[Field] = []
    for index, raw in enumerate(raw_fields):
        fields.append(_parse_field(raw, f"fields[{index}]"))
    names = [f.name for f in fields]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise InvalidReport(f"fields.{duplicate}", "appears twice")
    return Template(name, title, document_code, tuple(fields), builtin, document)


def _parse_field(raw: object, where: str) -> Field:
    if not isinstance(raw, dict):
        raise InvalidReport(where, "must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_]{0,63}$", name):
        raise InvalidReport(f"{where}.name", "a letter, then letters, digits or '_' (max 64)")
    where = f"fields.{name}"
    kind = raw.get("type")
    if kind not in FIELD_TYPES:
        raise InvalidReport(f"{where}.type", f"one of {', '.join(FIELD_TYPES)}")
    label = raw.get("label", name)
    if not isinstance(label, str) or not 0 < len(label) <= 64:
        raise InvalidReport(f"{where}.label", "must be 1-64 characters")
    code = _code(raw["code"], f"{where}.code") if raw.get("code") is not None else None
    unit = None
    minimum = maximum = None
    choices: list[dict] = []
    if kind == "number":
        if raw.get("unit") is None:
            raise InvalidReport(f"{where}.unit", "a number field needs a unit (a UCUM code)")
        unit = _code(raw["unit"], f"{where}.unit")
        for key in ("min", "max"):
            bound = raw.get(key)
            if bound is not None and (
                isinstance(bound, bool) or not isinstance(bound, int | float)
            ):
                raise InvalidReport(f"{where}.{key}", "must be a number")
        minimum, maximum = raw.get("min"), raw.get("max")
    if kind == "choice":
        raw_choices = raw.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            raise InvalidReport(f"{where}.choices", "a choice field needs a non-empty list")
        for raw_choice in raw_choices:
            if not isinstance(raw_choice, dict) or not isinstance(raw_choice.get("value"), str):
                raise InvalidReport(f"{where}.choices", "each choice is an object with a value")
            value = raw_choice["value"]
            if not 0 < len(value) <= 64:
                raise InvalidReport(f"{where}.choices", "a choice value is 1-64 characters")
            choice = {"value": value, "label": str(raw_choice.get("label", value))[:64]}
            if raw_choice.get("code") is not None:
                choice["code"] = _code(raw_choice["code"], f"{where}.choices.{value}.code")
            choices.append(choice)
    return Field(
        name,
        label,
        kind,
        bool(raw.get("required", False)),
        code,
        unit,
        minimum,
        maximum,
        tuple(choices),
    )


def builtin_templates() -> dict[str, Template]:
    return {
        template.name: template
        for template in (
            parse_template(orjson.loads(path.read_bytes()), builtin=True)
            for path in sorted(BUILTIN_DIR.glob("*.json"))
        )
    }


def validate_content(template: Template | None, body: dict, complete: bool) -> dict:
    """The report content `{"sections": {...}, "values": {...}}` from a request body, checked
    against the template (or the free-text sections). `complete`: every required field and at
    least one section must be present (signing). Raises InvalidReport naming the field."""
    sections = body.get("sections") or {}
    values = body.get("values") or {}
    if not isinstance(sections, dict):
        raise InvalidReport("sections", "must be an object of section name -> text")
    if not isinstance(values, dict):
        raise InvalidReport("values", "must be an object of field name -> value")
    if template is None:
        if values:
            raise InvalidReport("values", "structured values need a template")
        for name, text in sections.items():
            if name not in SECTIONS:
                raise InvalidReport(f"sections.{name}", f"unknown; known: {', '.join(SECTIONS)}")
            _text(text, f"sections.{name}")
        if complete and not any(text.strip() for text in sections.values()):
            raise InvalidReport("sections", "a report to sign needs some text")
        return {"sections": dict(sections), "values": {}}
    if sections:
        raise InvalidReport("sections", f"template {template.name!r} takes 'values'")
    checked: dict[str, object] = {}
    for name, value in values.items():
        field = template.field(name)
        if field is None:
            raise InvalidReport(f"values.{name}", f"not a field of template {template.name!r}")
        if value is None:
            continue
        checked[name] = _value(field, value)
    if complete:
        for field in template.fields:
            if field.required and checked.get(field.name) in (None, ""):
                raise InvalidReport(f"values.{field.name}", "is required to sign")
    return {"sections": {}, "values": checked}


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidReport(where, "must be text")
    if len(value) > MAX_TEXT:
        raise InvalidReport(where, f"longer than {MAX_TEXT} characters")
    return value


def _value(field: Field, value: object) -> object:
    where = f"values.{field.name}"
    if field.type == "text":
        return _text(value, where)
    if field.type == "number":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidReport(where, "must be a number")
        if field.minimum is not None and value < field.minimum:
            raise InvalidReport(where, f"{value} is below the minimum {field.minimum}")
        if field.maximum is not None and value > field.maximum:
            raise InvalidReport(where, f"{value} is above the maximum {field.maximum}")
        return value
    allowed = [choice["value"] for choice in field.choices]
    if value not in allowed:
        raise InvalidReport(where, f"{value!r} is not one of {', '.join(allowed)}")
    return value
