"""Directory import: Excel and CSV in, all-or-nothing, idempotent, every bad row reported."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from bot.services.directory import DirectoryError, directory_tree, import_rows, read_files
from storage.models import Area, Person, RoleAssignment, School
from tests.auxil.directory import write_directory
from tests.auxil.helpers import count


async def _import(sessions, clock, paths: list[Path]):
    rows, problems = read_files(paths)
    assert not problems, problems
    async with sessions() as session, session.begin():
        return await import_rows(session, rows, clock.now())


async def _problems(sessions, clock, paths: list[Path]) -> list[str]:
    rows, problems = read_files(paths)
    if problems:
        return [str(p) for p in problems]
    with pytest.raises(DirectoryError) as info:
        async with sessions() as session, session.begin():
            await import_rows(session, rows, clock.now())
    return [str(p) for p in info.value.problems]


def _csv(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_csv_import_builds_the_tree_and_keeps_diacritics(sessions, clock, tmp_path) -> None:
    result = await _import(sessions, clock, write_directory(tmp_path))
    assert result.created["areas"] == 5 and result.created["officers"] == 4
    async with sessions() as session:
        roots = await directory_tree(session)
        hx = (await session.execute(select(Area).where(Area.code == "HX"))).scalar_one()
        school = (await session.execute(select(School).where(School.code == "THCS-HX")))\
            .scalar_one()
    assert [r.area.code for r in roots] == ["TH"]
    [_bt, qh] = sorted(roots[0].children, key=lambda n: n.area.code)
    assert sorted(c.area.code for c in qh.children) == ["HX", "PL"]
    assert hx.name == "Xã Hồi Xuân"
    assert school.parent_code and len(school.parent_code) == 8
    hx_node = next(c for c in qh.children if c.area.code == "HX")
    assert (hx_node.schools, hx_node.officers, hx_node.liaisons) == (1, 2, 1)


async def test_reimport_updates_by_code_and_phone_without_duplicates(
        sessions, clock, tmp_path) -> None:
    paths = write_directory(tmp_path)
    await _import(sessions, clock, paths)
    officers = paths[2]
    officers.write_text(officers.read_text(encoding="utf-8").replace("Lê Văn An", "Lê Văn Ân")
                        .replace("0912345678,HX,primary", "0912345678,HX,backup"),
                        encoding="utf-8")
    result = await _import(sessions, clock, paths)
    assert result.created["areas"] == 0 and result.created["people"] == 0
    assert await count(sessions, Person) == 6
    assert await count(sessions, RoleAssignment) == 6
    async with sessions() as session:
        person = (await session.execute(
            select(Person).where(Person.phone == "+84912345678"))).scalar_one()
    assert person.name == "Lê Văn Ân"
    assert [r.duty for r in person.roles] == ["backup"]


async def test_decomposed_unicode_is_stored_as_nfc(sessions, clock, tmp_path) -> None:
    nfd = unicodedata.normalize("NFD", "Xã Hồi Xuân")
    path = _csv(tmp_path, "areas.csv", f"code,name,parent_code,level\nHX,{nfd},,xã\n")
    await _import(sessions, clock, [path])
    async with sessions() as session:
        name = (await session.execute(select(Area.name))).scalar_one()
    assert name == unicodedata.normalize("NFC", "Xã Hồi Xuân")


async def test_xlsx_workbook_with_numeric_phone_cells(sessions, clock, tmp_path) -> None:
    book = Workbook()
    areas = book.active
    areas.title = "areas"
    areas.append(["code", "name", "parent_code", "level"])
    areas.append(["HN", "Thành phố Hà Nội", None, "thành phố"])
    areas.append([101, "Phường Ba Đình", "HN", "phường"])  # Excel turns codes into numbers
    schools = book.create_sheet("schools")
    schools.append(["code", "name", "area_code", "level", "address"])
    schools.append(["THPT-PDP", "Trường THPT Phan Đình Phùng", 101, "THPT", "67 Cửa Bắc"])
    officers = book.create_sheet("officers")
    officers.append(["name", "phone", "area_code", "duty"])
    officers.append(["Ngô Quang Huy", 912345678, 101, "Primary"])  # leading 0 lost by Excel
    liaisons = book.create_sheet("liaisons")
    liaisons.append(["name", "phone", "school_code"])
    liaisons.append(["Bùi Thị Lan", "+84 90 123 4567", "THPT-PDP"])
    path = tmp_path / "danh-ba.xlsx"
    book.save(path)
    await _import(sessions, clock, [path])
    async with sessions() as session:
        phones = sorted((await session.execute(select(Person.phone))).scalars())
        area = (await session.execute(select(Area).where(Area.code == "101"))).scalar_one()
    assert phones == ["+84901234567", "+84912345678"]
    assert area.name == "Phường Ba Đình"


async def test_bad_rows_are_all_reported_with_file_and_row_and_nothing_is_written(
        sessions, clock, tmp_path) -> None:
    areas = _csv(tmp_path, "areas.csv", "code,name,parent_code,level\n"
                 "A,Xã A,B,xã\nB,Xã B,A,xã\nC,Xã C,NOWHERE,xã\nD,Xã D,,xã\nD,Xã D2,,xã\n")
    officers = _csv(tmp_path, "officers.csv", "name,phone,area_code,duty\n"
                    "Cán bộ 1,12ab,D,primary\nCán bộ 2,0912345678,D,sếp\n"
                    "Cán bộ 3,0912345679,Z,backup\n")
    liaisons = _csv(tmp_path, "liaisons.csv", "name,phone,school_code\n,0901234567,S1\n")
    problems = await _problems(sessions, clock, [areas, officers, liaisons])
    assert "areas.csv:2: parent cycle: A → B → A" in problems
    assert "areas.csv:3: parent cycle: B → A → B" in problems
    assert "areas.csv:4: unknown parent area 'NOWHERE'" in problems
    assert any(p.startswith("areas.csv:6: duplicate area code 'D'") for p in problems)
    assert "officers.csv:2: malformed phone '12ab'" in problems
    assert any(p.startswith("officers.csv:3: bad duty") for p in problems)
    assert "officers.csv:4: unknown area 'Z'" in problems
    assert "liaisons.csv:2: name is empty" in problems
    assert await count(sessions, Area) == 0
    assert await count(sessions, Person) == 0


async def test_unreadable_files_are_reported(tmp_path) -> None:
    latin = tmp_path / "areas.csv"
    latin.write_bytes("code,name\nHX,Xã Hồi Xuân\n".encode("cp1258", errors="replace"))
    odd = _csv(tmp_path, "odd.csv", "foo,bar\n1,2\n")
    _rows, problems = read_files([latin, odd, tmp_path / "missing.xlsx", tmp_path / "x.pdf"])
    text = [str(p) for p in problems]
    assert any("not UTF-8" in p for p in text)
    assert any("cannot tell what the file holds" in p for p in text)
    assert any("no such file" in p for p in text)
    assert len(text) == 4


async def test_a_vietnamese_workbook_with_a_title_block_imports(sessions, clock, tmp_path
                                                                ) -> None:
    book = Workbook()
    areas = book.active
    areas.title = "Địa bàn"
    areas.append(["DANH MỤC ĐỊA BÀN"])  # what an office puts above a table
    areas.append(["(kèm theo Kế hoạch số 12/KH-BCĐ ngày 20/11/2026)"])
    areas.append([])
    areas.append(["Mã", "Tên", "Mã địa bàn cấp trên", "Cấp"])
    areas.append(["HN", "Thành phố Hà Nội", None, "thành phố"])
    areas.append(["BD", "Phường Ba Đình", "HN", "phường"])
    officers = book.create_sheet("Cán bộ công an")
    officers.append(["DANH SÁCH CÁN BỘ CÔNG AN PHỤ TRÁCH ĐỊA BÀN"])
    officers.append([])
    officers.append(["Họ và tên", "Số điện thoại", "Mã địa bàn", "Nhiệm vụ"])
    officers.append(["Ngô Quang Huy", "0912345678", "BD", "trực chính"])
    officers.append(["Người Sai Số", "12ab", "BD", "trực phụ"])
    path = tmp_path / "danh-ba.xlsx"
    book.save(path)
    problems = await _problems(sessions, clock, [path])
    assert problems == ["danh-ba.xlsx[officers]:5: malformed phone '12ab'"]  # its real row
    officers.delete_rows(5)
    areas.cell(7, 1, "PL")  # and a school sheet in the words an office uses
    areas.cell(7, 2, "Phường Phúc Xá")
    areas.cell(7, 3, "HN")
    schools = book.create_sheet("Trường học")
    schools.append(["Mã", "Tên", "Mã địa bàn", "Cấp", "Địa chỉ"])
    schools.append(["THCS-BD", "Trường THCS Ba Đình", "BD", "Trung học cơ sở", ""])
    schools.append(["THCS-PX", "Trường THCS Phúc Xá", "PL", "thcs", ""])
    book.save(path)
    await _import(sessions, clock, [path])
    async with sessions() as session:
        huy = (await session.execute(select(Person).where(Person.name == "Ngô Quang Huy")))\
            .scalar_one()
        levels = set((await session.execute(select(School.level))).scalars())
        duty = (await session.execute(select(RoleAssignment.duty))).scalar_one()
    assert huy.phone == "+84912345678" and duty == "primary"  # «trực chính»
    assert levels == {"THCS"}  # one spelling: a THCS campaign reaches both schools
    assert await count(sessions, Area) == 3
