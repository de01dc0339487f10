"""Compile a `Query` to SQL under a `Scope` and run it.

Everything the caller may not see is excluded inside the SQL: the tenant on every table, and
for a source-locked scope the visible sources. A source-locked query reads every study and
series value (and matches, and orders) on the per-source rows (`StudySource`,
`SeriesSource`) of its sources, taking for each study and series the earliest row of a
visible source, never on the study and series rows, which keep the first upload's values
whatever its source. Such a row exists exactly while its source has an instance in the
study/series, so the join to it is also the visibility test (instance level: the instance's
own source). A scope that sees every source reads the study and series rows as before. Values are always bound parameters. Wildcards become GLOB on SQLite
(case-sensitive like the standard, and able to use an index for a literal prefix) and
LIKE .. ESCAPE '\\' on PostgreSQL; characters special to either are escaped.

Results are ordered so that paging with limit/offset returns every match exactly once:
studies newest first (undated last) then by key, or as `orderby=` asks (Tessera extension:
SORT_KEYS, empty values last, then by key); series and instances by their number within
their parent (unnumbered first) then by key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    and_,
    exists,
    false,
    func,
    or_,
    select,
    true,
)

from tessera.index.models import (
    SERIES_VALUE_COLUMNS,
    STUDY_VALUE_COLUMNS,
    Instance,
    Patient,
    Series,
    SeriesSource,
    Study,
    StudySource,
)
from tessera.index.order_status_query import add_order_status, order_status_condition
from tessera.index.priors import (
    add_other_patient_ids,
    identity_matches,
    linked_patient_pks,
    return_issuer,
)
from tessera.index.query import Match, MatchKind, Query
from tessera.index.query_attributes import DATE_TIME_PAIRS, Attribute, Level
from tessera.index.query_results import ResultBuilder, ReturnSet
from tessera.scope import Scope

PATIENT = Patient.__table__
STUDY = Study.__table__
SERIES = Series.__table__
INSTANCE = Instance.__table__
STUDY_SOURCE = StudySource.__table__
SERIES_SOURCE = SeriesSource.__table__
LEVEL_TABLE = {
    Level.PATIENT: PATIENT,
    Level.STUDY: STUDY,
    Level.SERIES: SERIES,
    Level.INSTANCE: INSTANCE,
}

# Patient attributes the study row carries too (see _Compiler.visible_patients).
_PATIENT_COLUMNS = (
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_name_norm",
    "patient_birth_date",
    "patient_sex",
)

# Server-side cap on one page of results (QIDO-RS answers with a Warning when it cuts).
DEFAULT_MAX_RESULTS = 10_000


@dataclass
class QueryPage:
    items: list[dict[str, Any]]
    # More results exist beyond this page (a limit, or the server's cap, cut them).
    more: bool


def run_query(
    conn: Connection,
    scope: Scope,
    query: Query,
    retrieve_root: str | None = None,
    max_results: int = DEFAULT_MAX_RESULTS,
) -> QueryPage:
    """One page of results (query.limit, capped at max_results; query.offset)."""
    limit = max_results if query.limit is None else min(query.limit, max_results)
    return _page(conn, scope, query, retrieve_root, limit, query.offset)


def iter_query(
    conn: Connection,
    scope: Scope,
    query: Query,
    retrieve_root: str | None = None,
    batch_size: int = 500,
) -> Iterator[dict[str, Any]]:
    """Every result (from query.offset, up to query.limit if set), fetched in batches.

    Run it inside one read transaction (Database.read()) so the batches see one snapshot.
    """
    remaining = query.limit
    offset = query.offset
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        page = _page(conn, scope, query, retrieve_root, size, offset)
        yield from page.items
        if not page.more:
            return
        offset += len(page.items)
        if remaining is not None:
            remaining -= len(page.items)


def _page(
    conn: Connection,
    scope: Scope,
    query: Query,
    retrieve_root: str | None,
    limit: int,
    offset: int,
) -> QueryPage:
    linked = linked_patient_pks(conn, scope, query)
    if linked is not None or query.patient_pks is not None:
        return_issuer(query)
    returns = ReturnSet.of(query, retrieve_root is not None)
    compiler = _Compiler(conn.dialect.name, scope, query, linked)
    statement = compiler.statement(returns).limit(limit + 1).offset(offset)
    result = conn.execute(statement)
    positions = {name: index for index, name in enumerate(result.keys())}
    rows = result.all()
    more = len(rows) > limit
    rows = rows[:limit]
    builder = ResultBuilder(conn, scope, query, returns, retrieve_root)
    items = builder.build(rows, positions)
    if query.return_order_status and query.level is Level.STUDY:
        add_order_status(conn, scope, items, [row[positions["pk"]] for row in rows])
    if linked is not None or query.patient_pks is not None:
        pks = [row[positions["pk"]] for row in rows]
        add_other_patient_ids(conn, scope, query, items, pks)
    return QueryPage(items, more)


def _like_pattern(pattern: str) -> str:
    out = []
    for char in pattern:
        if char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        elif char in "%_\\":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _glob_pattern(pattern: str) -> str:
    # In GLOB only '*', '?' and '[' are special; DICOM's '*' and '?' map straight through.
    return "".join("[[]" if char == "[" else char for char in pattern)


def wildcard_match(dialect: str, column: ColumnElement, pattern: str) -> ColumnElement:
    """`pattern` in DICOM form ('*' any run, '?' one character, all else literal)."""
    if dialect == "sqlite":
        return column.op("GLOB")(_glob_pattern(pattern))
    return column.like(_like_pattern(pattern), escape="\\")


# Aliases are immutable: built once, so a search does not rebuild their column collections.
_VISIBLE_STUDY = STUDY_SOURCE.alias("visible_study")
_VISIBLE_SERIES = SERIES_SOURCE.alias("visible_series")
_VP_STUDY_SOURCE = STUDY_SOURCE.alias("vp_study_source")
_VIS_STUDY = STUDY.alias("vis_study")
_MIS_SERIES_SOURCE = SERIES_SOURCE.alias("mis_series")
_MIS_SERIES = SERIES.alias("mis_series")
_CIS_INSTANCE = INSTANCE.alias("cis_instance")
_EARLIER = {
    "visible_study": STUDY_SOURCE.alias("earlier_visible_study"),
    "visible_series": SERIES_SOURCE.alias("earlier_visible_series"),
}


class _Compiler:
    def __init__(
        self, dialect: str, scope: Scope, query: Query, linked: list[int] | None = None
    ) -> None:
        self.dialect = dialect
        self.scope = scope
        self.query = query
        # Visible identities linked to the query's Patient ID (tessera.index.priors).
        self.linked = linked
        self.level = query.level
        self.locked = scope.source_pks is not None
        self.patient = PATIENT
        if self.locked and query.level is Level.PATIENT:
            self.patient = self.visible_patients()
        # Source-locked: where study and series values are read (the earliest visible
        # source's row of each study / series; see representative()).
        self.study_values = _VISIBLE_STUDY
        self.series_values = _VISIBLE_SERIES

    # -- helpers ---------------------------------------------------------------------------
    def visible_patients(self):  # type: ignore[no-untyped-def]
        """The patient table as a source-locked scope may see it.

        A patient row is shared by every source of the tenant and keeps the attributes of its
        first upload, which may come from a source this scope cannot see (so does the study
        row). So patients are derived from the patient attributes of the visible sources' own
        study rows (`StudySource`) instead.
        """
        values = _VP_STUDY_SOURCE
        columns = [STUDY.c.patient_pk.label("id"), STUDY.c.tenant_id.label("tenant_id")]
        columns += [func.max(values.c[name]).label(name) for name in _PATIENT_COLUMNS]
        return (
            select(*columns)
            .select_from(values.join(STUDY, values.c.study_pk == STUDY.c.id))
            .where(STUDY.c.tenant_id == self.scope.tenant_id, self.visible_instance(values))
            .group_by(STUDY.c.patient_pk, STUDY.c.tenant_id)
            .subquery("visible_patient")
        )

    def representative(self, values, owner: str) -> ColumnElement:  # type: ignore[no-untyped-def]
        """`values` (a StudySource / SeriesSource alias) is the earliest row of a visible
        source for its study / series (`owner`: 'study_pk' or 'series_pk')."""
        condition = self.visible_instance(values)
        if len(self.scope.source_pks or ()) <= 1:
            return condition  # one row per (owner, source): nothing earlier to rule out
        earlier = _EARLIER[values.name]
        return and_(
            condition,
            ~exists().where(
                earlier.c[owner] == values.c[owner],
                self.visible_instance(earlier),
                earlier.c.id < values.c.id,
            ),
        )

    def wildcard(self, column: ColumnElement, pattern: str) -> ColumnElement:
        return wildcard_match(self.dialect, column, pattern)

    def table_for(self, attribute: Attribute):  # type: ignore[no-untyped-def]
        if attribute.level is Level.PATIENT and self.level is Level.PATIENT:
            return self.patient
        if self.locked and attribute.column in STUDY_VALUE_COLUMNS:
            return self.study_values
        if attribute.level is Level.PATIENT:
            return STUDY
        if self.locked and attribute.column in SERIES_VALUE_COLUMNS:
            return self.series_values
        return LEVEL_TABLE[attribute.level]

    def column(self, attribute: Attribute) -> ColumnElement:
        assert attribute.column is not None
        return self.table_for(attribute).c[attribute.column]

    def visible_instance(self, instance) -> ColumnElement:  # type: ignore[no-untyped-def]
        assert self.scope.source_pks is not None
        return instance.c.source_pk.in_(sorted(self.scope.source_pks))

    # -- statement -------------------------------------------------------------------------
    def statement(self, returns: ReturnSet) -> Select:
        level = self.level
        table = self.patient if level is Level.PATIENT else LEVEL_TABLE[level]
        columns = [table.c.id.label("pk")]
        tables = {table}
        if level is Level.SERIES:
            tables.add(STUDY)
        elif level is Level.INSTANCE:
            tables.update((SERIES, STUDY))
        for attribute in returns.column_attributes:
            attr_table = self.table_for(attribute)
            columns.append(attr_table.c[attribute.column].label(returns.label(attribute)))
        for extra in returns.extra_columns(level):
            columns.append(extra)
        statement = select(*columns)
        joined: FromClause
        if level is Level.SERIES:
            joined = SERIES.join(STUDY, SERIES.c.study_pk == STUDY.c.id)
        elif level is Level.INSTANCE:
            joined = INSTANCE.join(SERIES, INSTANCE.c.series_pk == SERIES.c.id).join(
                STUDY, INSTANCE.c.study_pk == STUDY.c.id
            )
        else:
            joined = table
        if self.locked and level is not Level.PATIENT:
            study_values, series_values = self.study_values, self.series_values
            joined = joined.join(
                study_values,
                and_(
                    study_values.c.study_pk == STUDY.c.id,
                    # Lets the (tenant_id, ...) indexes of study_source serve the search.
                    study_values.c.tenant_id == self.scope.tenant_id,
                    self.representative(study_values, "study_pk"),
                ),
            )
            if level >= Level.SERIES:
                joined = joined.join(
                    series_values,
                    and_(
                        series_values.c.series_pk == SERIES.c.id,
                        self.representative(series_values, "series_pk"),
                    ),
                )
        statement = statement.select_from(joined)
        conditions = [t.c.tenant_id == self.scope.tenant_id for t in tables]
        conditions.append(self.visibility())
        conditions.extend(self.match_conditions())
        return statement.where(and_(*conditions)).order_by(*self.order_by())

    def visibility(self) -> ColumnElement:
        """Only entities with at least one instance the scope can see."""
        level = self.level
        if self.locked:
            # Study and series: the join to a visible source's row (statement()); patients:
            # visible_patients() holds only those with such a row.
            return self.visible_instance(INSTANCE) if level is Level.INSTANCE else true()
        if level is Level.INSTANCE:
            return true()
        if level is Level.SERIES:
            return SERIES.c.number_of_series_related_instances > 0
        if level is Level.STUDY:
            return STUDY.c.number_of_study_related_instances > 0
        st2 = _VIS_STUDY
        return exists().where(
            st2.c.patient_pk == PATIENT.c.id, st2.c.number_of_study_related_instances > 0
        )

    def order_by(self) -> list[ColumnElement]:
        pg = self.dialect == "postgresql"
        if self.level is Level.STUDY and self.query.order:
            return self.requested_study_order()
        if self.level is Level.STUDY:
            values = self.study_values if self.locked else STUDY
            date, time_ = values.c.study_date.desc(), values.c.study_time.desc()
            if pg:  # SQLite already sorts NULLs last in descending order
                date, time_ = date.nulls_last(), time_.nulls_last()
            # The last key as in the date index, so the index is read in order: the study row
            # id (SQLite's rowid), or the per-source row id (one row per study here too).
            return [date, time_, values.c.id.desc()]
        if self.level is Level.SERIES:
            values = self.series_values if self.locked else SERIES
            number = values.c.series_number.asc()
            if pg:  # SQLite already sorts NULLs first in ascending order
                number = number.nulls_first()
            return [SERIES.c.study_pk, number, SERIES.c.id]
        if self.level is Level.INSTANCE:
            number = INSTANCE.c.instance_number.asc()
            if pg:
                number = number.nulls_first()
            return [INSTANCE.c.series_pk, number, INSTANCE.c.id]
        return [self.patient.c.id]

    def requested_study_order(self) -> list[ColumnElement]:
        """`orderby=` (Tessera extension): the requested keys, empty values last either way,
        then the study row id in the direction of the first key, so that pages of one order
        never overlap or skip."""
        values = self.study_values if self.locked else STUDY
        columns = {
            "StudyDate": ("study_date", "study_time"),
            # The normalised name (what matching uses): case and accents do not split it.
            "PatientName": ("patient_name_norm",),
            "PatientID": ("patient_id",),
            "AccessionNumber": ("accession_number",),
        }
        order: list[ColumnElement] = []
        for keyword, descending in self.query.order:
            for name in columns[keyword]:
                column = values.c[name]
                order.append((column.desc() if descending else column.asc()).nulls_last())
        first_descending = self.query.order[0][1]
        order.append(values.c.id.desc() if first_descending else values.c.id.asc())
        return order

    # -- matching --------------------------------------------------------------------------
    def match_conditions(self) -> list[ColumnElement]:
        matches = list(self.query.matches)
        conditions: list[ColumnElement] = []
        if self.query.combine_date_time:
            for date_keyword, time_keyword in DATE_TIME_PAIRS:
                date_match = next((m for m in matches if m.attribute.keyword == date_keyword), None)
                time_match = next((m for m in matches if m.attribute.keyword == time_keyword), None)
                if (
                    date_match is not None
                    and time_match is not None
                    and date_match.kind is MatchKind.RANGE
                ):
                    conditions.append(self.combined_date_time(date_match, time_match))
                    matches.remove(date_match)
                    matches.remove(time_match)
        if self.linked is not None:
            # A linked search: the Patient ID (and Issuer) match, or a linked identity's study.
            identity = identity_matches(self.query)
            matches = [m for m in matches if m not in identity]
            own = and_(*(self.condition(m) for m in identity))
            conditions.append(or_(own, STUDY.c.patient_pk.in_(self.linked)))
        if self.query.patient_pks is not None:
            conditions.append(STUDY.c.patient_pk.in_(list(self.query.patient_pks)))
        if self.query.order_statuses and self.level is Level.STUDY:
            conditions.append(
                order_status_condition(self.scope, STUDY.c.id, self.query.order_statuses)
            )
        conditions.extend(self.condition(match) for match in matches)
        return conditions

    def combined_date_time(self, date_match: Match, time_match: Match) -> ColumnElement:
        """StudyDate=d1-d2 with StudyTime=t1-t2: from d1 t1 to d2 t2 (PS3.4 C.2.2.2.5.1)."""
        date_column = self.column(date_match.attribute)
        time_column = self.column(time_match.attribute)
        parts = []
        if date_match.low is not None:
            if time_match.low is not None:
                parts.append(
                    or_(
                        date_column > date_match.low,
                        and_(date_column == date_match.low, time_column >= time_match.low),
                    )
                )
            else:
                parts.append(date_column >= date_match.low)
        if date_match.high is not None:
            if time_match.high is not None:
                parts.append(
                    or_(
                        date_column < date_match.high,
                        and_(date_column == date_match.high, time_column <= time_match.high),
                    )
                )
            else:
                parts.append(date_column <= date_match.high)
        return and_(*parts)

    def condition(self, match: Match) -> ColumnElement:
        attribute = match.attribute
        if attribute.keyword == "ModalitiesInStudy":
            return self.modalities_in_study(match)
        if attribute.keyword == "SOPClassesInStudy":
            return self.sop_classes_in_study(match)
        if attribute.vr == "PN":
            table = self.table_for(attribute)
            return self.person_name(table.c[f"{attribute.column}_norm"], match)
        return self.value_condition(self.column(attribute), match)

    def value_condition(self, column: ColumnElement, match: Match) -> ColumnElement:
        kind = match.kind
        if match.attribute.vr in ("DA", "TM", "DT"):
            parts = []
            if match.low is not None:
                parts.append(column >= match.low)
            if match.high is not None:
                parts.append(column <= match.high)
            if match.kind is MatchKind.SINGLE and match.low == match.high:
                return column == match.low
            return and_(*parts)
        if kind is MatchKind.SINGLE:
            return column == match.values[0]
        if kind is MatchKind.LIST:
            return column.in_(list(match.values))
        if kind is MatchKind.WILDCARD:
            return self.wildcard(column, match.values[0])
        return false()

    def person_name(self, normalized: ColumnElement, match: Match) -> ColumnElement:
        kind = match.kind
        if kind is MatchKind.FUZZY:
            words = []
            for word in match.values:
                # Each word is the start of some component: of the value, or after a
                # component ('^'), group ('=') or word (' ') separator.
                words.append(
                    or_(
                        *(
                            self.wildcard(normalized, f"{lead}{word}*")
                            for lead in ("", "*^", "* ", "*=")
                        )
                    )
                )
            return and_(*words)
        value = match.values[0]
        if kind is MatchKind.WILDCARD:
            if value.endswith("*"):
                return self.wildcard(normalized, value)
            # A value without '=' names the first (alphabetic) group; other groups may follow.
            return or_(self.wildcard(normalized, value), self.wildcard(normalized, value + "=*"))
        if "=" in value:
            return normalized == value
        return or_(normalized == value, self.wildcard(normalized, value + "=*"))

    def modalities_in_study(self, match: Match) -> ColumnElement:
        if self.locked:  # the visible sources' own series rows (one exists per series held)
            s2 = _MIS_SERIES_SOURCE
            visible = self.visible_instance(s2)
        else:
            s2 = _MIS_SERIES
            visible = s2.c.number_of_series_related_instances > 0
        condition = self.value_condition(s2.c.modality, match)
        return exists().where(s2.c.study_pk == STUDY.c.id, condition, visible)

    def sop_classes_in_study(self, match: Match) -> ColumnElement:
        i2 = _CIS_INSTANCE
        conditions = [i2.c.study_pk == STUDY.c.id, self.value_condition(i2.c.sop_class_uid, match)]
        if self.scope.source_pks is not None:
            conditions.append(self.visible_instance(i2))
        return exists().where(*conditions)


def count_rows(conn: Connection, scope: Scope, query: Query) -> int:
    """How many results the query has in all (no paging)."""
    returns = ReturnSet.of(query, False)
    linked = linked_patient_pks(conn, scope, query)
    statement = _Compiler(conn.dialect.name, scope, query, linked).statement(returns)
    statement = statement.order_by(None)
    return conn.execute(select(func.count()).select_from(statement.subquery())).scalar_one()
