"""The directory: importing areas, schools, officers and liaisons from .xlsx/.csv, showing it."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.codes import PARENT_CODE_LENGTH, unused_code
from storage.models import Area, Duty, Person, Role, RoleAssignment, School

KINDS = ("areas", "schools", "officers", "liaisons")
COLUMNS = {
    "areas": ("code", "name", "parent_code", "level"),
    "schools": ("code", "name", "area_code", "level", "address"),
    "officers": ("name", "phone", "area_code", "duty"),
    "liaisons": ("name", "phone", "school_code"),
}
REQUIRED = {
    "areas": ("code", "name"),
    "schools": ("code", "name", "area_code"),
    "officers": ("name", "phone", "area_code", "duty"),
    "liaisons": ("name", "phone", "school_code"),
}


class PhoneError(ValueError):
    """A phone number that is not a valid Vietnamese (or international) number."""


def normalise_phone(raw: object) -> str:
    """Return a phone number in E.164 (+84…); Excel's 912345678 for 0912345678 is accepted."""
    text = _cell(raw)
    if not text:
        raise PhoneError("phone is empty")
    try:
        number = phonenumbers.parse(text, "VN")
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(f"malformed phone {text!r}") from exc
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(f"malformed phone {text!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _cell(value: object) -> str:
    """Turn a CSV/Excel cell into tidy NFC text (Excel turns codes like 101 into 101.0)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(unicodedata.normalize("NFC", str(value)).split())


@dataclass(frozen=True)
class Row:
    """One data row and where it came from."""

    kind: str
    source: str
    line: int
    values: dict[str, str]

    def where(self) -> str:
        """Return 'file:row' for messages."""
        return f"{self.source}:{self.line}"


@dataclass
class ImportProblem:
    """A reason a row (or a file) cannot be imported."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class ImportResult:
    """What an import did, per kind: how many rows were new and how many updated."""

    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)


class DirectoryError(Exception):
    """An import was refused; nothing was written."""

    def __init__(self, problems: list[ImportProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def _kind_from_header(header: Iterable[str]) -> str | None:
    cols = set(header)
    if "duty" in cols:
        return "officers"
    if "school_code" in cols:
        return "liaisons"
    if "area_code" in cols and "code" in cols:
        return "schools"
    if "code" in cols and ("parent_code" in cols or "name" in cols):
        return "areas"
    return None


def _rows_from_table(
    kind: str, source: str, header: list[str], body: Iterator[tuple[int, list[object]]]
) -> tuple[list[Row], list[ImportProblem]]:
    problems = []
    missing = [c for c in REQUIRED[kind] if c not in header]
    if missing:
        return [], [ImportProblem(source, f"{kind}: missing column(s) {', '.join(missing)}")]
    rows = []
    for line, cells in body:
        values = {name: _cell(cells[i]) if i < len(cells) else ""
                  for i, name in enumerate(header) if name}
        if not any(values.values()):
            continue
        rows.append(Row(kind, source, line, values))
    return rows, problems


def _header(cells: Iterable[object]) -> list[str]:
    return [_cell(c).lower().lstrip("\ufeff") for c in cells]


def read_csv(path: Path) -> tuple[list[Row], list[ImportProblem]]:
    """Read a CSV file, recognising its kind from the header; UTF-8 with or without BOM."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [ImportProblem(path.name, "not UTF-8: in Excel choose 'CSV UTF-8' when saving")]
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = _header(next(reader))
    except StopIteration:
        return [], [ImportProblem(path.name, "the file is empty")]
    kind = _kind_from_header(header)
    if kind is None:
        return [], [ImportProblem(path.name, "cannot tell what the file holds from its header; "
                                             "expected the columns of areas, schools, officers "
                                             "or liaisons")]
    return _rows_from_table(kind, path.name, header,
                            ((n, list(cells)) for n, cells in enumerate(reader, start=2)))


def read_xlsx(path: Path) -> tuple[list[Row], list[ImportProblem]]:
    """Read the sheets named areas, schools, officers and liaisons of a workbook."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        return [], [ImportProblem(path.name, f"cannot open the workbook ({exc})")]
    rows: list[Row] = []
    problems: list[ImportProblem] = []
    try:
        sheets = {ws.title.strip().lower(): ws for ws in workbook.worksheets}
        found = [k for k in KINDS if k in sheets]
        if not found:
            problems.append(ImportProblem(path.name, "no sheet named areas, schools, officers "
                                                     "or liaisons"))
        for kind in found:
            it = sheets[kind].iter_rows(values_only=True)
            try:
                header = _header(next(it))
            except StopIteration:
                continue
            got, bad = _rows_from_table(kind, f"{path.name}[{kind}]", header,
                                        ((n, list(cells)) for n, cells in enumerate(it, start=2)))
            rows += got
            problems += bad
    finally:
        workbook.close()
    return rows, problems


def read_files(paths: Iterable[Path]) -> tuple[list[Row], list[ImportProblem]]:
    """Read every file; problems are collected, never raised, so all are reported at once."""
    rows: list[Row] = []
    problems: list[ImportProblem] = []
    for path in paths:
        if not path.exists():
            problems.append(ImportProblem(str(path), "no such file"))
            continue
        suffix = path.suffix.lower()
        if suffix in (".xlsx", ".xlsm"):
            got, bad = read_xlsx(path)
        elif suffix in (".csv", ".txt"):
            got, bad = read_csv(path)
        else:
            got, bad = [], [ImportProblem(path.name, "only .xlsx and .csv files can be imported")]
        rows += got
        problems += bad
    return rows, problems


@dataclass
class _Plan:
    areas: dict[str, Row] = field(default_factory=dict)
    schools: dict[str, Row] = field(default_factory=dict)
    people: dict[str, str] = field(default_factory=dict)  # phone -> name
    officers: dict[tuple[str, str], str] = field(default_factory=dict)  # (phone, area) -> duty
    liaisons: set[tuple[str, str]] = field(default_factory=set)  # (phone, school)


async def _validate(session: AsyncSession, rows: list[Row]) -> tuple[_Plan, list[ImportProblem]]:
    plan = _Plan()
    problems: list[ImportProblem] = []
    db_areas = dict((await session.execute(select(Area.code, Area.parent_id))).all())
    area_code_by_id = dict((await session.execute(select(Area.id, Area.code))).all())
    db_schools = set((await session.execute(select(School.code))).scalars())

    def need(row: Row) -> bool:
        empty = [c for c in REQUIRED[row.kind] if not row.values.get(c)]
        for col in empty:
            problems.append(ImportProblem(row.where(), f"{col} is empty"))
        return not empty

    by_kind: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)

    for row in by_kind["areas"]:
        if not need(row):
            continue
        code = row.values["code"]
        if code in plan.areas:
            problems.append(ImportProblem(
                row.where(), f"duplicate area code {code!r} (also at {plan.areas[code].where()})"))
            continue
        plan.areas[code] = row
    # The tree after the import: imported parents override the database's.
    parent_of: dict[str, str | None] = {
        code: area_code_by_id.get(pid) if pid else None for code, pid in db_areas.items()}
    for code, row in plan.areas.items():
        parent_of[code] = row.values.get("parent_code") or None
    for code, row in plan.areas.items():
        parent = parent_of[code]
        if parent is not None and parent not in parent_of:
            problems.append(ImportProblem(row.where(), f"unknown parent area {parent!r}"))
            continue
        path = [code]
        while parent is not None:
            if parent in path:
                cycle = " → ".join([*path[path.index(parent):], parent])
                problems.append(ImportProblem(row.where(), f"parent cycle: {cycle}"))
                break
            path.append(parent)
            parent = parent_of.get(parent)

    for row in by_kind["schools"]:
        if not need(row):
            continue
        code = row.values["code"]
        if code in plan.schools:
            problems.append(ImportProblem(
                row.where(), f"duplicate school code {code!r} "
                             f"(also at {plan.schools[code].where()})"))
            continue
        if row.values["area_code"] not in parent_of:
            problems.append(ImportProblem(row.where(),
                                          f"unknown area {row.values['area_code']!r}"))
            continue
        plan.schools[code] = row

    first_name_at: dict[str, Row] = {}

    def person(row: Row) -> str | None:
        try:
            phone = normalise_phone(row.values["phone"])
        except PhoneError as exc:
            problems.append(ImportProblem(row.where(), str(exc)))
            return None
        name = row.values["name"]
        if phone in plan.people and plan.people[phone] != name:
            problems.append(ImportProblem(
                row.where(), f"phone {row.values['phone']} is given two names: "
                             f"{plan.people[phone]!r} (at {first_name_at[phone].where()}) "
                             f"and {name!r}"))
            return None
        plan.people[phone] = name
        first_name_at.setdefault(phone, row)
        return phone

    for row in by_kind["officers"]:
        if not need(row):
            continue
        duty = row.values["duty"].lower()
        ok = True
        if duty not in set(Duty):
            problems.append(ImportProblem(row.where(), f"bad duty {row.values['duty']!r} "
                                                       "(primary, backup or chief)"))
            ok = False
        area = row.values["area_code"]
        if area not in parent_of:
            problems.append(ImportProblem(row.where(), f"unknown area {area!r}"))
            ok = False
        phone = person(row)
        if phone is None or not ok:
            continue
        if (phone, area) in plan.officers:
            problems.append(ImportProblem(row.where(), f"officer {row.values['phone']} is listed "
                                                       f"twice for area {area!r}"))
            continue
        plan.officers[(phone, area)] = duty

    for row in by_kind["liaisons"]:
        if not need(row):
            continue
        school = row.values["school_code"]
        known = school in plan.schools or school in db_schools
        if not known:
            problems.append(ImportProblem(row.where(), f"unknown school {school!r}"))
        phone = person(row)
        if phone is None or not known:
            continue
        plan.liaisons.add((phone, school))
    return plan, problems


async def import_rows(session: AsyncSession, rows: list[Row], now: datetime) -> ImportResult:
    """Validate everything, then write everything in the caller's transaction (or nothing)."""
    plan, problems = await _validate(session, rows)
    if problems:
        raise DirectoryError(problems)
    result = ImportResult()
    areas = {a.code: a for a in (await session.execute(select(Area))).scalars()}
    for code, row in plan.areas.items():
        area = areas.get(code)
        if area is None:
            area = Area(code=code, name=row.values["name"])
            session.add(area)
            areas[code] = area
            result.created["areas"] += 1
        else:
            result.updated["areas"] += 1
        area.name = row.values["name"]
        area.level = row.values.get("level") or area.level
    await session.flush()
    for code, row in plan.areas.items():
        parent = row.values.get("parent_code") or None
        areas[code].parent_id = areas[parent].id if parent else None

    schools = {s.code: s for s in (await session.execute(select(School))).scalars()}
    for code, row in plan.schools.items():
        school = schools.get(code)
        if school is None:
            school = School(code=code, parent_code=await unused_code(session, PARENT_CODE_LENGTH))
            session.add(school)
            schools[code] = school
            result.created["schools"] += 1
        else:
            result.updated["schools"] += 1
        school.name = row.values["name"]
        school.area_id = areas[row.values["area_code"]].id
        school.level = row.values.get("level") or school.level
        school.address = row.values.get("address") or school.address
        await session.flush()

    people = {p.phone: p for p in (await session.execute(
        select(Person).where(Person.phone.in_(list(plan.people))))).scalars()}
    for phone, name in plan.people.items():
        person = people.get(phone)
        if person is None:
            person = Person(phone=phone, name=name, created_at=now)
            session.add(person)
            people[phone] = person
            result.created["people"] += 1
        else:
            person.name = name
            result.updated["people"] += 1
    await session.flush()

    existing = {(r.person_id, r.role, r.area_id, r.school_id): r for r in (await session.execute(
        select(RoleAssignment).where(RoleAssignment.role.in_([Role.OFFICER, Role.LIAISON]))
    )).scalars()}
    wanted: list[tuple[str, int, int | None, int | None, str | None]] = [
        ("officers", people[p].id, areas[a].id, None, duty)
        for (p, a), duty in plan.officers.items()
    ] + [("liaisons", people[p].id, None, schools[s].id, None) for p, s in plan.liaisons]
    for kind, person_id, area_id, school_id, duty in wanted:
        role = Role.OFFICER if kind == "officers" else Role.LIAISON
        assignment = existing.get((person_id, role, area_id, school_id))
        if assignment is None:
            session.add(RoleAssignment(person_id=person_id, role=role, area_id=area_id,
                                       school_id=school_id, duty=duty, created_at=now))
            result.created[kind] += 1
        else:
            assignment.duty = duty
            result.updated[kind] += 1
    await session.flush()
    return result


@dataclass
class AreaNode:
    """An area with its direct counts, for printing the tree."""

    area: Area
    schools: int = 0
    officers: int = 0
    liaisons: int = 0
    parents: int = 0
    children: list[AreaNode] = field(default_factory=list)


async def directory_tree(session: AsyncSession) -> list[AreaNode]:
    """Return the area forest with schools, officers, liaisons and parents counted per area."""
    areas = (await session.execute(select(Area).order_by(Area.code))).scalars().all()
    nodes = {a.id: AreaNode(a) for a in areas}
    school_area = dict((await session.execute(select(School.id, School.area_id))).all())
    for area_id, n in (await session.execute(
            select(School.area_id, func.count()).group_by(School.area_id))).all():
        nodes[area_id].schools = n
    role_rows = (await session.execute(
        select(RoleAssignment.role, RoleAssignment.area_id, RoleAssignment.school_id,
               func.count()).group_by(RoleAssignment.role, RoleAssignment.area_id,
                                      RoleAssignment.school_id))).all()
    for role, area_id, school_id, n in role_rows:
        target = area_id if area_id is not None else school_area.get(school_id)
        node = nodes.get(target)
        if node is None:
            continue
        if role == Role.OFFICER:
            node.officers += n
        elif role == Role.LIAISON:
            node.liaisons += n
        elif role == Role.PARENT:
            node.parents += n
    roots = []
    for node in nodes.values():
        parent = nodes.get(node.area.parent_id) if node.area.parent_id else None
        (parent.children if parent else roots).append(node)
    return roots
