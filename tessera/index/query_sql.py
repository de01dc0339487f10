"""Compile a `Query` to SQL under a `Scope` and run it.

Everything the caller may not see is excluded inside the SQL: the tenant on every table, and
for a source-locked scope an EXISTS over the visible instances (instance level: the
instance's own source). Values are always bound parameters. Wildcards become GLOB on SQLite
(case-sensitive like the standard, and able to use an index for a literal prefix) and
LIKE .. ESCAPE '\\' on PostgreSQL; characters special to either are escaped.

Results are ordered so that paging with limit/offset returns every match exactly once:
studies newest first (undated last) then by key; series and instances by their number
within their parent (unnumbered first) then by key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    false,
    func,
    or_,
    select,
    true,
)

from tessera.auth.scope import Scope
from tessera.index.models import Instance, Patient, Series, Study
from tessera.index.query import Match, MatchKind, Query
from tessera.index.query_attributes import DATE_TIME_PAIRS, Attribute, Level
from tessera.index.query_results import ResultBuilder, ReturnSet

PATIENT = Patient.__table__
STUDY = Study.__table__
SERIES = Series.__table__
INSTANCE = Instance.__table__
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
    returns = ReturnSet.of(query, retrieve_root is not None)
    compiler = _Compiler(conn.dialect.name, scope, query)
    statement = compiler.statement(returns).limit(limit + 1).offset(offset)
    result = conn.execute(statement)
    positions = {name: index for index, name in enumerate(result.keys())}
    rows = result.all()
    more = len(rows) > limit
    rows = rows[:limit]
    builder = ResultBuilder(conn, scope, query, returns, retrieve_root)
    return QueryPage(builder.build(rows, positions), more)


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


class _Compiler:
    def __init__(self, dialect: str, scope: Scope, query: Query) -> None:
        self.dialect = dialect
        self.scope = scope
        self.query = query
        self.level = query.level
        self.patient = PATIENT
        if scope.source_pks is not None and query.level is Level.PATIENT:
            self.patient = self.visible_patients()

    # -- helpers ---------------------------------------------------------------------------
    def visible_patients(self):  # type: ignore[no-untyped-def]
        """The patient table as a source-locked scope may see it.

        A patient row is shared by every source of the tenant and keeps the attributes of its
        first upload, which may come from a source this scope cannot see. So patients are
        derived from the visible studies' own copies of the patient attributes instead.
        """
        i2 = INSTANCE.alias("vp_instance")
        visible_study = exists().where(i2.c.study_pk == STUDY.c.id, self.visible_instance(i2))
        columns = [STUDY.c.patient_pk.label("id"), STUDY.c.tenant_id.label("tenant_id")]
        columns += [func.max(STUDY.c[name]).label(name) for name in _PATIENT_COLUMNS]
        return (
            select(*columns)
            .where(STUDY.c.tenant_id == self.scope.tenant_id, visible_study)
            .group_by(STUDY.c.patient_pk, STUDY.c.tenant_id)
            .subquery("visible_patient")
        )

    def wildcard(self, column: ColumnElement, pattern: str) -> ColumnElement:
        return wildcard_match(self.dialect, column, pattern)

    def table_for(self, attribute: Attribute):  # type: ignore[no-untyped-def]
        if attribute.level is Level.PATIENT:
            return self.patient if self.level is Level.PATIENT else STUDY
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
        if level is Level.SERIES:
            statement = statement.select_from(SERIES.join(STUDY, SERIES.c.study_pk == STUDY.c.id))
        elif level is Level.INSTANCE:
            statement = statement.select_from(
                INSTANCE.join(SERIES, INSTANCE.c.series_pk == SERIES.c.id).join(
                    STUDY, INSTANCE.c.study_pk == STUDY.c.id
                )
            )
        else:
            statement = statement.select_from(table)
        conditions = [t.c.tenant_id == self.scope.tenant_id for t in tables]
        conditions.append(self.visibility())
        conditions.extend(self.match_conditions())
        return statement.where(and_(*conditions)).order_by(*self.order_by())

    def visibility(self) -> ColumnElement:
        """Only entities with at least one instance the scope can see."""
        locked = self.scope.source_pks is not None
        level = self.level
        if level is Level.INSTANCE:
            return self.visible_instance(INSTANCE) if locked else true()
        if level is Level.SERIES:
            if not locked:
                return SERIES.c.number_of_series_related_instances > 0
            i2 = INSTANCE.alias("vis_instance")
            return exists().where(i2.c.series_pk == SERIES.c.id, self.visible_instance(i2))
        if level is Level.STUDY:
            if not locked:
                return STUDY.c.number_of_study_related_instances > 0
            i2 = INSTANCE.alias("vis_instance")
            return exists().where(i2.c.study_pk == STUDY.c.id, self.visible_instance(i2))
        st2 = STUDY.alias("vis_study")
        if not locked:
            return exists().where(
                st2.c.patient_pk == PATIENT.c.id, st2.c.number_of_study_related_instances > 0
            )
        # visible_patients() holds only patients with a visible study.
        return true()

    def order_by(self) -> list[ColumnElement]:
        pg = self.dialect == "postgresql"
        if self.level is Level.STUDY:
            date, time_ = STUDY.c.study_date.desc(), STUDY.c.study_time.desc()
            if pg:  # SQLite already sorts NULLs last in descending order
                date, time_ = date.nulls_last(), time_.nulls_last()
            return [date, time_, STUDY.c.id.desc()]
        if self.level is Level.SERIES:
            number = SERIES.c.series_number.asc()
            if pg:  # SQLite already sorts NULLs first in ascending order
                number = number.nulls_first()
            return [SERIES.c.study_pk, number, SERIES.c.id]
        if self.level is Level.INSTANCE:
            number = INSTANCE.c.instance_number.asc()
            if pg:
                number = number.nulls_first()
            return [INSTANCE.c.series_pk, number, INSTANCE.c.id]
        return [self.patient.c.id]

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
        s2 = SERIES.alias("mis_series")
        condition = self.value_condition(s2.c.modality, match)
        if self.scope.source_pks is None:
            visible = s2.c.number_of_series_related_instances > 0
        else:
            i2 = INSTANCE.alias("mis_instance")
            visible = exists().where(i2.c.series_pk == s2.c.id, self.visible_instance(i2))
        return exists().where(s2.c.study_pk == STUDY.c.id, condition, visible)

    def sop_classes_in_study(self, match: Match) -> ColumnElement:
        i2 = INSTANCE.alias("cis_instance")
        conditions = [i2.c.study_pk == STUDY.c.id, self.value_condition(i2.c.sop_class_uid, match)]
        if self.scope.source_pks is not None:
            conditions.append(self.visible_instance(i2))
        return exists().where(*conditions)


def count_rows(conn: Connection, scope: Scope, query: Query) -> int:
    """How many results the query has in all (no paging)."""
    returns = ReturnSet.of(query, False)
    statement = _Compiler(conn.dialect.name, scope, query).statement(returns).order_by(None)
    return conn.execute(select(func.count()).select_from(statement.subquery())).scalar_one()
