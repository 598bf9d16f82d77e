"""The directory: importing areas, schools, officers and liaisons from .xlsx/.csv, showing it."""

from __future__ import annotations

import csv
import io
import logging
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import phonenumbers
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.i18n import Translator
from bot.services.codes import PARENT_CODE_LENGTH, unused_codes
from storage.models import Area, Duty, Person, Role, RoleAssignment, School

_LOGGER = logging.getLogger(__name__)
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

# The template workbook's Vietnamese sheet and column names (and duty words), read as the
# English ones: offices fill in the template, scripts write the English names.
VI_SHEETS = {"địa bàn": "areas", "trường học": "schools", "cán bộ công an": "officers",
             "giáo viên liên lạc": "liaisons", "giáo viên đầu mối": "liaisons"}
VI_COLUMNS = {
    "areas": {"mã địa bàn": "code", "tên địa bàn": "name", "mã": "code", "tên": "name",
              "mã địa bàn cấp trên": "parent_code", "cấp": "level"},
    "schools": {"mã trường": "code", "tên trường": "name", "mã": "code", "tên": "name",
                "mã địa bàn": "area_code", "cấp học": "level", "cấp": "level",
                "địa chỉ": "address"},
    "officers": {"họ và tên": "name", "số điện thoại": "phone", "mã địa bàn": "area_code",
                 "nhiệm vụ": "duty"},
    "liaisons": {"họ và tên": "name", "số điện thoại": "phone", "mã trường": "school_code"},
}
VI_DUTIES = {"chính": Duty.PRIMARY, "trực chính": Duty.PRIMARY, "dự phòng": Duty.BACKUP,
             "trực phụ": Duty.BACKUP, "phụ": Duty.BACKUP, "chỉ huy": Duty.CHIEF,
             "lãnh đạo": Duty.CHIEF}
# School levels as offices write them, read as the ones campaign filters and reports use:
# «Trung học cơ sở» and «THCS» must not become two levels a filter silently half-misses.
SCHOOL_LEVELS = {"mầm non": "mầm non", "mẫu giáo": "mầm non", "nhà trẻ": "mầm non",
                 "tiểu học": "tiểu học", "trung học cơ sở": "THCS", "thcs": "THCS",
                 "trung học phổ thông": "THPT", "thpt": "THPT"}


def school_level(text: str | None) -> str | None:
    """The school level in its one spelling (unknown levels are kept as written)."""
    if not text:
        return None
    clean = " ".join(unicodedata.normalize("NFC", text).split())
    return SCHOOL_LEVELS.get(clean.lower(), clean)


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
    """A reason a row (or a file) cannot be imported: where, and a catalogue key
    (directory.problem.*) with its values, so it reads in each person's language."""

    where: str  # "file", "file:row" or "file[sheet]:row"
    key: str
    values: dict[str, object] = field(default_factory=dict)
    source: str | None = None  # "file" or "file[sheet]" of a row
    line: int | None = None

    @classmethod
    def at(cls, row: Row, key: str, **values: object) -> ImportProblem:
        """A problem with one row."""
        return cls(row.where(), key, values, row.source, row.line)

    def text(self, t: Translator) -> str:
        """What is wrong, in the reader's language."""
        return t(f"directory.problem.{self.key}", **self.values)

    def place(self, t: Translator) -> str:
        """Where it is: the file, the sheet and the row, as a reader would look for it."""
        if self.line is None or self.source is None:
            return self.where
        file, _, sheet = self.source.partition("[")
        if sheet:
            kind = sheet.rstrip("]")
            return t("directory.where_sheet", file=file, sheet=t(f"directory.sheet.{kind}"),
                     line=self.line)
        return t("directory.where_row", file=file, line=self.line)

    @property
    def reason(self) -> str:
        """What is wrong, in English (the command line)."""
        return self.text(Translator("en"))

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


def _in_english(kind: str, header: list[str]) -> list[str]:
    """The header with the template's Vietnamese column names read as the English ones."""
    names = VI_COLUMNS[kind]
    return [names.get(name, name) for name in header]


def _kind_from_header(header: list[str]) -> str | None:
    # A header in Vietnamese: of the kinds whose required columns it has, the one that
    # reads most of its columns («Mã, Tên, Mã địa bàn» is a school, not an area).
    fits = []
    for kind in KINDS:
        english = set(_in_english(kind, header))
        if set(header) != english and set(REQUIRED[kind]) <= english:
            fits.append((len(english & set(COLUMNS[kind])), -KINDS.index(kind), kind))
    if fits:
        return max(fits)[2]
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
    header = _in_english(kind, header)
    missing = [c for c in REQUIRED[kind] if c not in header]
    if missing:
        return [], [ImportProblem(source, "missing_columns",
                                  {"kind": kind, "columns": ", ".join(missing)})]
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


TITLE_ROWS = 10  # an office's sheet may open with a title, a date, blank rows: skip those


def _find_header(rows: Iterator[list[object]], kind: str | None
                 ) -> tuple[str | None, list[str], int]:
    """The first of the first TITLE_ROWS rows that is a header (of `kind`, or of any kind
    when None): its kind, its names and its line number; (None, first row, 1) if none is."""
    first: list[str] | None = None
    for line, cells in enumerate(rows, start=1):
        header = _header(cells)
        first = header if first is None else first
        found = _kind_from_header(header) if kind is None else (
            kind if set(REQUIRED[kind]) <= set(_in_english(kind, header)) else None)
        if found is not None:
            return found, header, line
        if line >= TITLE_ROWS:
            break
    return None, first or [], 1


def read_csv(path: Path) -> tuple[list[Row], list[ImportProblem]]:
    """Read a CSV file, recognising its kind from the header; UTF-8 with or without BOM."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [ImportProblem(path.name, "not_utf8")]
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    lines = list(csv.reader(io.StringIO(text), dialect))
    if not lines:
        return [], [ImportProblem(path.name, "empty_file")]
    kind, header, at = _find_header(iter(lines), None)
    if kind is None:
        return [], [ImportProblem(path.name, "unknown_header")]
    return _rows_from_table(kind, path.name, header,
                            ((n, list(cells)) for n, cells in enumerate(lines[at:],
                                                                         start=at + 1)))


def read_xlsx(path: Path) -> tuple[list[Row], list[ImportProblem]]:
    """Read the sheets named areas, schools, officers and liaisons of a workbook."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        return [], [ImportProblem(path.name, "bad_workbook", {"error": exc})]
    rows: list[Row] = []
    problems: list[ImportProblem] = []
    try:
        sheets = {}
        for ws in workbook.worksheets:
            title = _cell(ws.title).lower()
            sheets[VI_SHEETS.get(title, title)] = ws
        found = [k for k in KINDS if k in sheets]
        if not found:
            problems.append(ImportProblem(path.name, "no_sheet"))
        for kind in found:
            table = [list(cells) for cells in sheets[kind].iter_rows(values_only=True)]
            if not table:
                continue
            _, header, at = _find_header(iter(table), kind)
            got, bad = _rows_from_table(
                kind, f"{path.name}[{kind}]", header,
                ((n, cells) for n, cells in enumerate(table[at:], start=at + 1)))
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
            problems.append(ImportProblem(str(path), "no_file"))
            continue
        suffix = path.suffix.lower()
        if suffix in (".xlsx", ".xlsm"):
            got, bad = read_xlsx(path)
        elif suffix in (".csv", ".txt"):
            got, bad = read_csv(path)
        else:
            got, bad = [], [ImportProblem(path.name, "bad_type")]
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
            problems.append(ImportProblem.at(row, "empty", column=col))
        return not empty

    by_kind: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)

    for row in by_kind["areas"]:
        if not need(row):
            continue
        code = row.values["code"]
        if code in plan.areas:
            problems.append(ImportProblem.at(
                row, "duplicate_area", code=code, other=plan.areas[code].where()))
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
            problems.append(ImportProblem.at(row, "unknown_parent", code=parent))
            continue
        path = [code]
        while parent is not None:
            if parent in path:
                cycle = " → ".join([*path[path.index(parent):], parent])
                problems.append(ImportProblem.at(row, "cycle", cycle=cycle))
                break
            path.append(parent)
            parent = parent_of.get(parent)

    for row in by_kind["schools"]:
        if not need(row):
            continue
        code = row.values["code"]
        if code in plan.schools:
            problems.append(ImportProblem.at(
                row, "duplicate_school", code=code, other=plan.schools[code].where()))
            continue
        if row.values["area_code"] not in parent_of:
            problems.append(ImportProblem.at(row, "unknown_area", code=row.values["area_code"]))
            continue
        plan.schools[code] = row

    first_name_at: dict[str, Row] = {}

    def person(row: Row) -> str | None:
        try:
            phone = normalise_phone(row.values["phone"])
        except PhoneError:
            key = "phone_malformed" if row.values["phone"] else "phone_empty"
            problems.append(ImportProblem.at(row, key, phone=row.values["phone"]))
            return None
        name = row.values["name"]
        if phone in plan.people and plan.people[phone] != name:
            problems.append(ImportProblem.at(
                row, "two_names", phone=row.values["phone"], first=plan.people[phone],
                other=first_name_at[phone].where(), name=name))
            return None
        plan.people[phone] = name
        first_name_at.setdefault(phone, row)
        return phone

    for row in by_kind["officers"]:
        if not need(row):
            continue
        duty = row.values["duty"].lower()
        duty = VI_DUTIES.get(duty, duty)
        ok = True
        if duty not in set(Duty):
            problems.append(ImportProblem.at(row, "bad_duty", duty=row.values["duty"]))
            ok = False
        area = row.values["area_code"]
        if area not in parent_of:
            problems.append(ImportProblem.at(row, "unknown_area", code=area))
            ok = False
        phone = person(row)
        if phone is None or not ok:
            continue
        if (phone, area) in plan.officers:
            problems.append(ImportProblem.at(row, "officer_twice",
                                             phone=row.values["phone"], code=area))
            continue
        plan.officers[(phone, area)] = duty

    for row in by_kind["liaisons"]:
        if not need(row):
            continue
        school = row.values["school_code"]
        known = school in plan.schools or school in db_schools
        if not known:
            problems.append(ImportProblem.at(row, "unknown_school", code=school))
        phone = person(row)
        if phone is None or not known:
            continue
        plan.liaisons.add((phone, school))
    return plan, problems


def _changes(row: object, **values: object) -> bool:
    """Whether writing these values would change the row (an update that changes nothing
    is not counted: a re-import of the same file reports 0 changed)."""
    return any(getattr(row, name) != value for name, value in values.items())


async def import_rows(session: AsyncSession, rows: list[Row], now: datetime,
                      progress: Callable[[str], None] | None = None) -> ImportResult:
    """Validate everything, then write everything in the caller's transaction (or nothing).
    progress(stage) hears each stage begin: checked, schools, people, roles (a province's
    workbook takes seconds)."""
    tell = progress or (lambda _stage: None)
    plan, problems = await _validate(session, rows)
    if problems:
        raise DirectoryError(problems)
    tell("checked")
    result = ImportResult()
    areas = {a.code: a for a in (await session.execute(select(Area))).scalars()}
    existing_areas = set(areas)
    changed: set[str] = set()
    for code, row in plan.areas.items():
        area = areas.get(code)
        if area is None:
            area = Area(code=code, name=row.values["name"])
            session.add(area)
            areas[code] = area
            result.created["areas"] += 1
        elif _changes(area, name=row.values["name"],
                      level=row.values.get("level") or area.level):
            changed.add(code)
        area.name = row.values["name"]
        area.level = row.values.get("level") or area.level
    await session.flush()
    for code, row in plan.areas.items():
        parent = row.values.get("parent_code") or None
        parent_id = areas[parent].id if parent else None
        if code in existing_areas and areas[code].parent_id != parent_id:
            changed.add(code)
        areas[code].parent_id = parent_id
    result.updated["areas"] = len(changed)

    tell("schools")
    schools = {s.code: s for s in (await session.execute(select(School))).scalars()}
    parent_codes = iter(await unused_codes(
        session, sum(1 for code in plan.schools if code not in schools), PARENT_CODE_LENGTH))
    for code, row in plan.schools.items():
        school = schools.get(code)
        if school is None:
            school = School(code=code, parent_code=next(parent_codes))
            session.add(school)
            schools[code] = school
            result.created["schools"] += 1
        elif _changes(school, name=row.values["name"],
                      area_id=areas[row.values["area_code"]].id,
                      level=school_level(row.values.get("level")) or school.level,
                      address=row.values.get("address") or school.address):
            result.updated["schools"] += 1
        school.name = row.values["name"]
        school.area_id = areas[row.values["area_code"]].id
        school.level = school_level(row.values.get("level")) or school.level
        school.address = row.values.get("address") or school.address
    await session.flush()

    tell("people")
    known: dict[str, Person] = {}
    phones = list(plan.people)
    for start in range(0, len(phones), 500):
        known.update((p.phone, p) for p in (await session.execute(
            select(Person).where(Person.phone.in_(phones[start:start + 500])))).scalars())
    new_people = []
    for phone, name in plan.people.items():
        person = known.get(phone)
        if person is None:
            new_people.append({"phone": phone, "name": name, "created_at": now,
                               "campaigns_stopped": False})
            result.created["people"] += 1
        else:
            if _changes(person, name=name):
                result.updated["people"] += 1
            person.name = name
    await session.flush()
    person_ids = {phone: p.id for phone, p in known.items()}
    for start in range(0, len(new_people), 1000):
        # Core inserts in batches: the ORM wrote thousands of people one row at a time.
        person_ids.update((await session.execute(
            insert(Person).returning(Person.phone, Person.id),
            new_people[start:start + 1000])).all())

    tell("roles")
    existing = {(r.person_id, r.role, r.area_id, r.school_id): r for r in (await session.execute(
        select(RoleAssignment).where(RoleAssignment.role.in_([Role.OFFICER, Role.LIAISON]))
    )).scalars()}
    wanted: list[tuple[str, int, int | None, int | None, str | None]] = [
        ("officers", person_ids[p], areas[a].id, None, duty)
        for (p, a), duty in plan.officers.items()
    ] + [("liaisons", person_ids[p], None, schools[s].id, None) for p, s in plan.liaisons]
    new_roles = []
    for kind, person_id, area_id, school_id, duty in wanted:
        role = Role.OFFICER if kind == "officers" else Role.LIAISON
        assignment = existing.get((person_id, role, area_id, school_id))
        if assignment is None:
            new_roles.append({"person_id": person_id, "role": role, "area_id": area_id,
                              "school_id": school_id, "duty": duty, "created_at": now})
            result.created[kind] += 1
        else:
            if _changes(assignment, duty=duty):
                result.updated[kind] += 1
            assignment.duty = duty
    await session.flush()
    if new_roles:
        await session.execute(insert(RoleAssignment), new_roles)
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


# ---- a preview of an import, and people leaving -----------------------------------------------

@dataclass(frozen=True)
class Leaving:
    """Someone the directory no longer lists for a place: moved elsewhere, or removed."""

    person_id: int
    name: str | None
    phone: str | None
    role: str
    scope: str  # the area or school code they leave
    to: tuple[str, ...] = ()  # where the file puts them now (moved), empty when removed


@dataclass
class Preview:
    """What applying an import would do: new and updated per kind, who moves or leaves."""

    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    moved: list[Leaving] = field(default_factory=list)
    removed: list[Leaving] = field(default_factory=list)


async def preview(session: AsyncSession, rows: list[Row], now: datetime) -> Preview:
    """What importing these rows would change, nothing written: the import runs in a
    savepoint that is rolled back. The file is the whole list of officers of each area it
    lists officers for (and of liaisons of each school it lists liaisons for): whoever the
    database has there and the file does not is moved (when the file lists them elsewhere)
    or removed. Raises DirectoryError with every problem, like the import."""
    plan, problems = await _validate(session, rows)
    if problems:
        raise DirectoryError(problems)
    found = Preview()
    found.moved, found.removed = await _leaving(session, plan)
    savepoint = await session.begin_nested()
    try:
        result = await import_rows(session, rows, now)
    finally:
        await savepoint.rollback()
    found.created, found.updated = result.created, result.updated
    return found


async def _leaving(session: AsyncSession, plan: _Plan) -> tuple[list[Leaving], list[Leaving]]:
    listed_officers: dict[str, list[str]] = defaultdict(list)
    for phone, area in plan.officers:
        listed_officers[phone].append(area)
    listed_liaisons: dict[str, list[str]] = defaultdict(list)
    for phone, school in plan.liaisons:
        listed_liaisons[phone].append(school)
    moved: list[Leaving] = []
    removed: list[Leaving] = []
    places = (
        (Role.OFFICER, Area, RoleAssignment.area_id, plan.officers, listed_officers),
        (Role.LIAISON, School, RoleAssignment.school_id, plan.liaisons, listed_liaisons),
    )
    for role, model, column, planned, listed in places:
        held = (await session.execute(
            select(Person.id, Person.name, Person.phone, model.code)
            .join(RoleAssignment, RoleAssignment.person_id == Person.id)
            .join(model, model.id == column)
            .where(RoleAssignment.role == role,
                   model.code.in_({code for _, code in planned})))).all()
        for person_id, name, phone, code in held:
            if (phone, code) in planned:
                continue
            elsewhere = tuple(sorted(listed.get(phone or "", [])))
            (moved if elsewhere else removed).append(
                Leaving(person_id, name, phone, role, code, elsewhere))
    return moved, removed


async def end_roles(session: AsyncSession, leaving: Iterable[Leaving]) -> list[RoleAssignment]:
    """End the roles these people hold at the places they leave; return the ended rows
    (their details belong in the audit: the person, accounts and cases stay)."""
    ended: list[RoleAssignment] = []
    for who in leaving:
        column = RoleAssignment.area_id if who.role == Role.OFFICER else RoleAssignment.school_id
        model = Area if who.role == Role.OFFICER else School
        place = select(model.id).where(model.code == who.scope).scalar_subquery()
        ended += (await session.execute(select(RoleAssignment).where(
            RoleAssignment.person_id == who.person_id, RoleAssignment.role == who.role,
            column == place))).scalars().all()
    for row in ended:
        await session.delete(row)
    await session.flush()
    return ended


async def deactivate(session: AsyncSession, person: Person, cases: Any, actor: Any,
                     allowed: set[int] | None = None) -> tuple[list[list[Any]], list[Any]]:
    """Someone left: their officer, admin and liaison roles (in `allowed` areas, or
    everywhere when None) end and their open cases there are routed afresh (cases: the
    CaseService, actor: who does it); the person, their accounts and every case stay.
    Returns the ended roles (for the audit) and the rerouted cases."""
    school_area = dict((await session.execute(select(School.id, School.area_id))).all())
    ended = [r for r in person.roles
             if r.role in (Role.OFFICER, Role.ADMIN, Role.LIAISON) and (
                 allowed is None or r.area_id in allowed
                 or school_area.get(r.school_id) in allowed)]
    details = [[r.role, r.area_id, r.school_id, r.duty] for r in ended]
    for row in ended:
        await session.delete(row)
    await session.flush()
    await session.refresh(person, ["roles"])
    released = await cases.release(actor, person.id) if ended else []
    return details, released


async def scope_problems(session: AsyncSession, rows: list[Row],
                         allowed: set[int]) -> list[ImportProblem]:
    """Rows that reach outside these areas (an admin's subtree): a new area must hang below
    one of them, and schools, officers and liaisons must belong to one of them."""
    codes = {code for code, area_id in (await session.execute(
        select(Area.code, Area.id))).all() if area_id in allowed}
    areas = [r for r in rows if r.kind == "areas"]
    grew = True
    while grew:  # a new area below a new area below an allowed one is allowed
        grew = False
        for row in areas:
            code = row.values.get("code")
            if code and code not in codes and row.values.get("parent_code") in codes:
                codes.add(code)
                grew = True
    schools = {code for code, area_code in (await session.execute(
        select(School.code, Area.code).join(Area, Area.id == School.area_id))).all()
        if area_code in codes}
    schools |= {r.values.get("code", "") for r in rows
                if r.kind == "schools" and r.values.get("area_code") in codes}
    problems = []
    for row in rows:
        if row.kind == "liaisons":
            inside = row.values.get("school_code") in schools
            code = row.values.get("school_code", "")
        else:
            key = "code" if row.kind == "areas" else "area_code"
            code = row.values.get(key, "")
            inside = code in codes
        if code and not inside:
            problems.append(ImportProblem.at(row, "out_of_scope", code=code))
    return problems


class NoSuchSchool(LookupError):
    """No school has this code."""


def public_page_url(base: str, school_code: str) -> str:
    """Where a school's public report page is (the web chat's)."""
    return f"{base}/chat/s/{school_code}"


async def set_public_page(session: AsyncSession, school_code: str, on: bool) -> School:
    """Open or close a school's public report page (anyone may report for the school there,
    anonymously); raises NoSuchSchool."""
    school = (await session.execute(
        select(School).where(School.code == school_code))).scalar_one_or_none()
    if school is None:
        raise NoSuchSchool(school_code)
    school.public_reports = on
    _LOGGER.info("School %s: public report page %s", school.code, "on" if on else "off")
    return school
