"""Turn the rows a query selected into DICOM JSON (PS3.18 Annex F) result objects.

Which attributes a result carries (`ReturnSet`): the PS3.18 defaults of the level (unless
the caller asks for exactly its keys), the keys it asked for, and for `includefield=all`
every attribute the index has at that level. Registry attributes come from index columns;
computed ones (counts, ModalitiesInStudy) from the index rows, or for a source-locked Scope
from a grouped count of the visible instances only (modalities from the visible sources' own
series rows); any other attribute from the stored
metadata of the instance (instance level) or of the first visible instance of the
series/study.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import orjson
from pydicom.datadict import dictionary_VR
from sqlalchemy import Connection, and_, func, select

from tessera.index.models import Instance, InstanceMetadata, Series, SeriesSource, Study
from tessera.index.query import Query
from tessera.index.query_attributes import (
    BY_TAG,
    INSTANCE_AVAILABILITY,
    RETRIEVE_URL,
    SPECIFIC_CHARACTER_SET,
    Attribute,
    Level,
    attributes_at,
    default_return,
)
from tessera.scope import Scope

STUDY = Study.__table__
SERIES = Series.__table__
SERIES_SOURCE = SeriesSource.__table__
INSTANCE = Instance.__table__
METADATA = InstanceMetadata.__table__

_SPECIALS = (INSTANCE_AVAILABILITY, RETRIEVE_URL, SPECIFIC_CHARACTER_SET)
_STUDY_COMPUTED = {
    "ModalitiesInStudy": "modalities_in_study",
    "SOPClassesInStudy": "sop_classes_in_study",
    "NumberOfStudyRelatedSeries": "number_of_study_related_series",
    "NumberOfStudyRelatedInstances": "number_of_study_related_instances",
}


@dataclass
class ReturnSet:
    level: Level
    attributes: list[Attribute] = field(default_factory=list)
    # Tags not in the registry: read from stored metadata.
    extra_tags: list[int] = field(default_factory=list)
    # includefield=all at instance level: every stored attribute too.
    all_metadata: bool = False

    @classmethod
    def of(cls, query: Query, with_retrieve_url: bool) -> ReturnSet:
        level = query.level
        available = {a.tag: a for a in attributes_at(level)}
        if level is not Level.PATIENT:
            available[INSTANCE_AVAILABILITY.tag] = INSTANCE_AVAILABILITY
            if with_retrieve_url:
                available[RETRIEVE_URL.tag] = RETRIEVE_URL
        available[SPECIFIC_CHARACTER_SET.tag] = SPECIFIC_CHARACTER_SET
        chosen: dict[int, Attribute] = {}
        if query.include_defaults:
            for attribute in default_return(level, query.parent_defaults):
                if attribute.tag in available:
                    chosen[attribute.tag] = attribute
        if query.include_all:
            for attribute in available.values():
                if attribute is not SPECIFIC_CHARACTER_SET:
                    chosen.setdefault(attribute.tag, attribute)
        returns = cls(level)
        for tag in query.return_keys:
            if tag in available:
                chosen.setdefault(tag, available[tag])
            elif tag not in BY_TAG and level is not Level.PATIENT:
                if tag not in returns.extra_tags:
                    returns.extra_tags.append(tag)
            # else: a registry attribute of a lower level (Modality in a study search):
            # it has no single value at this level, so it is not returned.
        returns.attributes = list(chosen.values())
        returns.all_metadata = query.include_all and level is Level.INSTANCE
        return returns

    @property
    def column_attributes(self) -> list[Attribute]:
        return [a for a in self.attributes if a.column is not None]

    @staticmethod
    def label(attribute: Attribute) -> str:
        return f"a_{attribute.keyword}"

    def wants(self, keyword: str) -> bool:
        return any(a.keyword == keyword for a in self.attributes)

    def extra_columns(self, level: Level) -> list[Any]:
        """Keys and UIDs the result builder needs besides the returned columns."""
        columns: list[Any] = []
        if level >= Level.STUDY:
            columns += [STUDY.c.id.label("study_pk"), STUDY.c.study_instance_uid.label("uid_study")]
        if level >= Level.SERIES:
            columns += [
                SERIES.c.id.label("series_pk"),
                SERIES.c.series_instance_uid.label("uid_series"),
            ]
        if level is Level.INSTANCE:
            columns.append(INSTANCE.c.sop_instance_uid.label("uid_instance"))
        for keyword, column in _STUDY_COMPUTED.items():
            if self.wants(keyword):
                columns.append(STUDY.c[column].label(f"c_{keyword}"))
        if self.wants("NumberOfSeriesRelatedInstances"):
            columns.append(
                SERIES.c.number_of_series_related_instances.label(
                    "c_NumberOfSeriesRelatedInstances"
                )
            )
        return columns


class ResultBuilder:
    def __init__(
        self,
        conn: Connection,
        scope: Scope,
        query: Query,
        returns: ReturnSet,
        retrieve_root: str | None,
    ) -> None:
        self.conn = conn
        self.scope = scope
        self.query = query
        self.returns = returns
        self.retrieve_root = retrieve_root.rstrip("/") if retrieve_root else None

    def build(self, rows: Sequence[Any], positions: dict[str, int]) -> list[dict[str, Any]]:
        """`rows` are tuples; `positions` maps the selected column labels to their index."""
        if not rows:
            return []
        self.at = positions
        level = self.query.level
        computed = self.computed_values(rows)
        metadata = self.stored_metadata(rows)
        # One (tag, row -> element) step per returned attribute, in tag order so the JSON
        # comes out sorted without sorting every object.
        steps = sorted(
            (
                (attribute.tag_hex, self.element_getter(attribute, computed))
                for attribute in self.returns.attributes
            ),
            key=lambda step: step[0],
        )
        identifying = [("0020000D", "uid_study")]
        if level >= Level.SERIES:
            identifying.append(("0020000E", "uid_series"))
        if level is Level.INSTANCE:
            identifying.append(("00080018", "uid_instance"))
        if level is Level.PATIENT:
            identifying = []
        returned = {tag for tag, _ in steps}
        identifying_at = [
            (tag, positions[label]) for tag, label in identifying if tag not in returned
        ]
        items = []
        for row in rows:
            item = {tag: getter(row) for tag, getter in steps}
            for tag, index in identifying_at:
                item[tag] = {"vr": "UI", "Value": [row[index]]}
            if metadata is not None:
                stored = metadata.get(row[0], {})
                extra: dict[str, Any] = {}
                if self.returns.all_metadata:
                    extra.update(
                        (tag, element)
                        for tag, element in stored.items()
                        if "BulkDataURI" not in element
                    )
                for extra_tag in self.returns.extra_tags:
                    key = f"{extra_tag:08X}"
                    extra[key] = stored.get(key) or {"vr": _dictionary_vr(extra_tag)}
                extra.update(item)
                item = dict(sorted(extra.items()))
            elif identifying:
                item = dict(sorted(item.items()))
            items.append(item)
        return items

    # -- values ----------------------------------------------------------------------------
    def element_getter(self, attribute: Attribute, computed: dict) -> Callable[[Any], dict]:
        keyword = attribute.keyword
        if attribute is INSTANCE_AVAILABILITY:
            online = _element("CS", "ONLINE")
            return lambda row: online
        if attribute is SPECIFIC_CHARACTER_SET:
            utf8 = _element("CS", "ISO_IR 192")
            return lambda row: utf8
        if attribute is RETRIEVE_URL:
            return lambda row: {"vr": "UR", "Value": [self.retrieve_url(row)]}
        if attribute.computed:
            vr, multi = attribute.vr, attribute.multi
            if keyword in computed:  # counted from the visible instances only
                values = computed[keyword]
                key_index = self.at[self.computed_key_label(attribute)]

                def value_of(row: Any) -> Any:
                    return values.get(row[key_index])
            else:  # kept current by ingest on the study / series row
                index = self.at[f"c_{keyword}"]

                def value_of(row: Any) -> Any:
                    return row[index]

            def computed_element(row: Any) -> dict:
                value = value_of(row)
                if multi:
                    if isinstance(value, str):
                        value = [v for v in value.split("\\") if v]
                    return _element(vr, *(value or []))
                return _element(vr, value)

            return computed_element
        index = self.at[ReturnSet.label(attribute)]
        convert = _converter(attribute.vr)
        return lambda row: convert(row[index])

    def retrieve_url(self, row: Any) -> str:
        at = self.at
        url = f"{self.retrieve_root}/studies/{row[at['uid_study']]}"
        if self.query.level >= Level.SERIES:
            url += f"/series/{row[at['uid_series']]}"
        if self.query.level is Level.INSTANCE:
            url += f"/instances/{row[at['uid_instance']]}"
        return url

    def computed_key_label(self, attribute: Attribute) -> str:
        if attribute.level is Level.PATIENT:
            return "pk"
        if attribute.level is Level.STUDY:
            return "study_pk"
        return "series_pk"

    def computed_values(self, rows: Sequence[Any]) -> dict[str, dict[Any, Any]]:
        """keyword -> {entity key -> value}, where the index columns cannot be used."""
        out: dict[str, dict[Any, Any]] = defaultdict(dict)
        wants = {a.keyword for a in self.returns.attributes if a.computed}
        if not wants:
            return out
        locked = self.scope.source_pks is not None
        if wants & _STUDY_COMPUTED.keys() and locked:
            self._visible_study_counts({r[self.at["study_pk"]] for r in rows}, out)
        if "NumberOfSeriesRelatedInstances" in wants and locked:
            counts = self.conn.execute(
                select(INSTANCE.c.series_pk, func.count())
                .where(
                    INSTANCE.c.series_pk.in_({r[self.at["series_pk"]] for r in rows}),
                    INSTANCE.c.source_pk.in_(sorted(self.scope.source_pks or ())),
                )
                .group_by(INSTANCE.c.series_pk)
            )
            out["NumberOfSeriesRelatedInstances"].update(dict(counts.tuples().all()))
        if wants & {
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedSeries",
            "NumberOfPatientRelatedInstances",
        }:
            self._patient_counts({r[0] for r in rows}, out)
        return out

    def _visible_study_counts(self, study_pks: set[int], out: dict) -> None:
        statement = (
            select(
                INSTANCE.c.study_pk,
                INSTANCE.c.series_pk,
                SERIES_SOURCE.c.modality,
                INSTANCE.c.sop_class_uid,
                func.count(),
            )
            .select_from(
                INSTANCE.join(
                    SERIES_SOURCE,
                    and_(
                        SERIES_SOURCE.c.series_pk == INSTANCE.c.series_pk,
                        SERIES_SOURCE.c.source_pk == INSTANCE.c.source_pk,
                    ),
                )
            )
            .where(
                INSTANCE.c.study_pk.in_(study_pks),
                INSTANCE.c.source_pk.in_(sorted(self.scope.source_pks or ())),
            )
            .group_by(
                INSTANCE.c.study_pk,
                INSTANCE.c.series_pk,
                SERIES_SOURCE.c.modality,
                INSTANCE.c.sop_class_uid,
            )
        )
        modalities: dict[int, set[str]] = defaultdict(set)
        sop_classes: dict[int, set[str]] = defaultdict(set)
        series: dict[int, set[int]] = defaultdict(set)
        instances: dict[int, int] = defaultdict(int)
        for study_pk, series_pk, modality, sop_class, count in self.conn.execute(statement):
            if modality:
                modalities[study_pk].add(modality)
            sop_classes[study_pk].add(sop_class)
            series[study_pk].add(series_pk)
            instances[study_pk] += count
        for study_pk in study_pks:
            out["ModalitiesInStudy"][study_pk] = sorted(modalities[study_pk])
            out["SOPClassesInStudy"][study_pk] = sorted(sop_classes[study_pk])
            out["NumberOfStudyRelatedSeries"][study_pk] = len(series[study_pk])
            out["NumberOfStudyRelatedInstances"][study_pk] = instances[study_pk]

    def _patient_counts(self, patient_pks: set[int], out: dict) -> None:
        studies: dict[int, set[int]] = defaultdict(set)
        series_counts: dict[int, int] = defaultdict(int)
        instance_counts: dict[int, int] = defaultdict(int)
        if self.scope.source_pks is None:
            rows = self.conn.execute(
                select(
                    STUDY.c.patient_pk,
                    STUDY.c.id,
                    STUDY.c.number_of_study_related_series,
                    STUDY.c.number_of_study_related_instances,
                ).where(
                    STUDY.c.patient_pk.in_(patient_pks),
                    STUDY.c.tenant_id == self.scope.tenant_id,
                    STUDY.c.number_of_study_related_instances > 0,
                )
            )
            for patient_pk, study_pk, n_series, n_instances in rows:
                studies[patient_pk].add(study_pk)
                series_counts[patient_pk] += n_series
                instance_counts[patient_pk] += n_instances
        else:
            rows = self.conn.execute(
                select(STUDY.c.patient_pk, INSTANCE.c.study_pk, INSTANCE.c.series_pk, func.count())
                .select_from(INSTANCE.join(STUDY, INSTANCE.c.study_pk == STUDY.c.id))
                .where(
                    STUDY.c.patient_pk.in_(patient_pks),
                    INSTANCE.c.source_pk.in_(sorted(self.scope.source_pks)),
                )
                .group_by(STUDY.c.patient_pk, INSTANCE.c.study_pk, INSTANCE.c.series_pk)
            )
            for patient_pk, study_pk, _series_pk, count in rows:
                studies[patient_pk].add(study_pk)
                series_counts[patient_pk] += 1
                instance_counts[patient_pk] += count
        for pk in patient_pks:
            out["NumberOfPatientRelatedStudies"][pk] = len(studies[pk])
            out["NumberOfPatientRelatedSeries"][pk] = series_counts[pk]
            out["NumberOfPatientRelatedInstances"][pk] = instance_counts[pk]

    # -- stored metadata -------------------------------------------------------------------
    def stored_metadata(self, rows: Sequence[Any]) -> dict[Any, dict] | None:
        """Entity key -> stored DICOM JSON of its instance (or first visible instance)."""
        if not self.returns.extra_tags and not self.returns.all_metadata:
            return None
        level = self.query.level
        keys = [r[0] for r in rows]
        if level is Level.INSTANCE:
            representative = {pk: pk for pk in keys}
        else:
            parent = INSTANCE.c.study_pk if level is Level.STUDY else INSTANCE.c.series_pk
            conditions = [parent.in_(keys)]
            if self.scope.source_pks is not None:
                conditions.append(INSTANCE.c.source_pk.in_(sorted(self.scope.source_pks)))
            representative = {
                instance_pk: entity_pk
                for entity_pk, instance_pk in self.conn.execute(
                    select(parent, func.min(INSTANCE.c.id))
                    .where(and_(*conditions))
                    .group_by(parent)
                )
            }
        out: dict[Any, dict] = {}
        for instance_pk, dicom_json in self.conn.execute(
            select(METADATA.c.instance_pk, METADATA.c.dicom_json).where(
                METADATA.c.instance_pk.in_(list(representative))
            )
        ):
            out[representative[instance_pk]] = orjson.loads(dicom_json)
        return out


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def _format(vr: str, value: Any) -> Any:
    if isinstance(value, datetime):
        text = value.strftime("%Y%m%d%H%M%S")
        return text + (f".{value.microsecond:06d}" if value.microsecond else "")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if isinstance(value, time):
        text = value.strftime("%H%M%S")
        return text + (f".{value.microsecond:06d}" if value.microsecond else "")
    if vr == "PN":
        groups = str(value).split("=")
        name = {
            key: group
            for key, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False)
            if group
        }
        return name or None
    return value


def _converter(vr: str) -> Callable[[Any], dict[str, Any]]:
    """value -> DICOM JSON element, for one VR (the hot path of large results)."""
    empty = {"vr": vr}
    if vr == "DA":
        return lambda v: (
            empty if v is None else {"vr": vr, "Value": [f"{v.year:04d}{v.month:02d}{v.day:02d}"]}
        )
    if vr in ("TM", "DT", "PN"):
        return lambda v: _element(vr, v)
    if vr in ("IS", "US", "UL", "SS", "SL"):
        return lambda v: empty if v is None else {"vr": vr, "Value": [v]}
    return lambda v: {"vr": vr, "Value": [v]} if v else empty


def _element(vr: str, *values: Any) -> dict[str, Any]:
    formatted = [_format(vr, v) for v in values if v is not None and v != ""]
    formatted = [v for v in formatted if v is not None]
    if not formatted:
        return {"vr": vr}
    return {"vr": vr, "Value": formatted}
