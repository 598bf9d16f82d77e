"""The `safeschool` command line, as an operator uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.cli import main
from bot.cli.keys import KEY_SETTINGS
from tests.auxil.directory import write_directory


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at the test database from an empty working directory."""
    monkeypatch.chdir(tmp_path)
    for name in ("SAFESCHOOL_TELEGRAM_TOKEN", "SAFESCHOOL_TELEGRAM_BOT_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", database_url)
    return tmp_path


def _import(folder: Path) -> None:
    assert main(["directory", "import", *map(str, write_directory(folder))]) == 0


def test_directory_import_and_show(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _import(env)
    out = capsys.readouterr().out  # Vietnamese unless asked otherwise: a district office's
    assert "Địa bàn: 5 mới, 0 cập nhật" in out
    assert main(["directory", "show"]) == 0
    tree = capsys.readouterr().out.splitlines()
    assert tree[0].startswith("TH  Tỉnh Thanh Hóa (tỉnh)")
    assert any(line.startswith("    HX  Xã Hồi Xuân (xã) — trường 1, cán bộ Công an 2, "
                               "giáo viên đầu mối 1") for line in tree)
    assert main(["directory", "show", "--lang", "en"]) == 0  # --lang after the command too
    assert any(line.startswith("    HX  Xã Hồi Xuân (xã) — schools 1, officers 2, liaisons 1")
               for line in capsys.readouterr().out.splitlines())


def test_bad_import_exits_1_and_lists_every_problem(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = env / "officers.csv"
    bad.write_text("name,phone,area_code,duty\nA,0912345678,NOPE,primary\nB,1,NOPE,x\n",
                   encoding="utf-8")
    assert main(["directory", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "Tệp officers.csv, dòng 2: Không có địa bàn mã «NOPE»" in err
    assert "Chưa nhập gì: cần sửa 4 lỗi." in err
    assert main(["--lang=en", "directory", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "officers.csv:2: unknown area 'NOPE'" in err
    assert "officers.csv:3: bad duty 'x'" in err
    assert "Nothing was imported: 4 problem(s)" in err


def test_invite_create_json_has_code_and_deep_link(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _import(env)
    capsys.readouterr()
    monkeypatch.setenv("SAFESCHOOL_TELEGRAM_BOT_USERNAME", "@safeschool_qh_bot")
    assert main(["invite", "create", "--role", "officer", "--area", "HX",
                 "--person", "0912 345 678", "--expires", "3d", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["link"] == f"https://t.me/safeschool_qh_bot?start={info['code']}"
    assert info["role"] == "officer" and info["scope"] == "HX"
    assert info["person"] == "+84912345678" and info["uses"] == 1
    assert len(info["code"]) == 10


def test_invite_create_refuses_a_scope_that_does_not_fit(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _import(env)
    assert main(["invite", "create", "--role", "liaison", "--area", "HX", "--lang", "en"]) == 2
    assert "needs --school" in capsys.readouterr().err
    assert main(["invite", "create", "--role", "officer", "--area", "XX"]) == 2
    assert "Danh bạ không có địa bàn mã «XX»." in capsys.readouterr().err
    assert main(["invite", "create", "--role", "officer", "--area", "XX", "--lang", "en"]) == 2
    assert "no area with code 'XX'" in capsys.readouterr().err
    assert main(["invite", "create", "--role", "officer", "--area", "HX",
                 "--expires", "soon", "--lang", "en"]) == 2
    assert "cannot read the duration" in capsys.readouterr().err


def test_invite_export_gives_everyone_unlinked_a_personal_code(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _import(env)
    out = env / "codes.xlsx"
    capsys.readouterr()
    assert main(["invite", "export", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"Đã ghi 6 mã mời cá nhân vào {out}"
    rows = list(load_workbook(out).active.iter_rows(values_only=True))
    assert rows[0][:4] == ("Họ và tên", "Số điện thoại", "Vai trò", "Nhiệm vụ")
    assert len(rows) == 1 + 6
    assert {r[2] for r in rows[1:]} == {"Cán bộ Công an phụ trách địa bàn",
                                        "Cán bộ đầu mối của nhà trường"}
    codes = {r[6] for r in rows[1:]}
    assert len(codes) == 6
    # Exporting again reuses the still-valid codes instead of minting new ones; --json
    # prints what the workbook holds, with the stable English names.
    assert main(["invite", "export", "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["file"] == str(out) and printed["count"] == 6
    assert {i["code"] for i in printed["invitations"]} == codes
    assert {i["role"] for i in printed["invitations"]} == {"officer", "liaison"}
    again = {r[6] for r in list(load_workbook(out).active.iter_rows(values_only=True))[1:]}
    assert again == codes


def test_school_codes_lists_parent_codes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _import(env)
    capsys.readouterr()
    assert main(["school", "codes", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["school"] for s in listed] == ["TH-PL", "THCS-HX"]
    assert all(len(s["parent_code"]) == 8 for s in listed)


def _run(args: list[str], env_vars: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    import os

    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("SAFESCHOOL_") or k in KEY_SETTINGS}
    environ.update(env_vars)
    return subprocess.run([sys.executable, "-m", "bot", *args], env=environ, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_run_with_no_channel_at_all_says_so_in_one_sentence(tmp_path: Path) -> None:
    off = {"SAFESCHOOL_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
           "SAFESCHOOL_WEB_CHAT": "false"}
    result = _run(["run"], off, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("safeschool: chưa đặt SAFESCHOOL_TELEGRAM_TOKEN")
    result = _run(["run"], {**off, "SAFESCHOOL_DEFAULT_LANGUAGE": "en"}, tmp_path)
    assert result.stderr.strip().startswith("safeschool: SAFESCHOOL_TELEGRAM_TOKEN is not set")
    assert "Traceback" not in result.stderr


def test_unreachable_database_exits_2_without_traceback(tmp_path: Path) -> None:
    url = "postgresql://postgres:hunter2secret@127.0.0.1:9/nowhere"
    result = _run(["run", "--lang", "en"], {"SAFESCHOOL_DATABASE_URL": url,
                                            "SAFESCHOOL_TELEGRAM_TOKEN": "123:abcdefgh"},
                  tmp_path)
    assert result.returncode == 2
    assert "cannot open the database postgresql://postgres:***@127.0.0.1:9/nowhere" \
        in result.stderr
    assert "hunter2secret" not in result.stderr and "Traceback" not in result.stderr
    result = _run(["directory", "show"], {"SAFESCHOOL_DATABASE_URL": url}, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize(("url", "says"), [
    ("nonsense", "cannot read it as a database URL"),
    ("mysql://root@localhost/safeschool", "the driver 'mysql' is not supported"),
])
def test_a_database_url_we_cannot_use_is_one_sentence_and_exit_2(
        url: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", url)
    assert main(["db", "upgrade", "--lang", "en"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("safeschool: SAFESCHOOL_DATABASE_URL is invalid: ") and says in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_an_unknown_log_level_is_refused_before_anything_starts(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--log-level", "LOUD"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "'LOUD' is not a log level" in err and "Traceback" not in err


def test_a_closed_pipe_ends_quietly(env: Path) -> None:
    _import(env)
    reader = subprocess.Popen([sys.executable, "-m", "bot", "directory", "show"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=env)
    reader.stdout.close()  # like `| head -0`: nobody reads what it prints
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 1
    assert err == ""


def test_postgresql_urls_need_nothing_beyond_the_readme_install() -> None:
    """asyncpg is a normal dependency: a postgresql:// URL picks it without extras."""
    from storage.db import normalise_url

    assert normalise_url("postgresql://postgres@127.0.0.1/test").startswith("postgresql+asyncpg")
    import asyncpg  # noqa: F401  (installed by `pip install -e .`, not only by an extra)


def test_version_and_json_directory_and_a_reimport_that_changes_nothing(
        env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("safeschool ")
    paths = [str(p) for p in write_directory(env)]
    assert main(["directory", "import", *paths, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["areas"] == {"created": 5, "updated": 0} and first["rows"] > 5
    assert main(["directory", "import", *paths, "--lang", "en"]) == 0
    assert "0 changed" in capsys.readouterr().out
    assert main(["directory", "show", "--json"]) == 0
    [province] = json.loads(capsys.readouterr().out)
    assert province["code"] == "TH" and {c["code"] for c in province["children"]} == {"QH",
                                                                                     "BT"}


async def test_directory_deactivate_ends_roles_and_reroutes_open_cases(
        env: Path, sessions, clock, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from sqlalchemy import select

    from storage.models import Account, AuditEvent, Incident, Outbox, RoleAssignment
    from tests.auxil.console import file_case
    from tests.auxil.people import BACKUP_HX, LIAISON_HX, OFFICER_HX, link_everyone

    assert await asyncio.to_thread(main, ["directory", "import",
                                          *map(str, write_directory(env))]) == 0
    await link_everyone(sessions, clock)
    case_id, ref = await file_case(sessions, clock.now(), LIAISON_HX, "THCS-HX")
    async with sessions() as session:
        an, bao = [(await session.execute(select(Account.person_id).where(
            Account.external_id == str(chat)))).scalar_one() for chat in (OFFICER_HX,
                                                                           BACKUP_HX)]
        assert (await session.get(Incident, case_id)).assigned_person_id == an
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["directory", "deactivate", "0912 345 678",
                                          "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"person": "Lê Văn An", "phone": "+84912345678", "roles_ended": 1,
                   "cases_rerouted": [ref]}
    async with sessions() as session:
        assert (await session.get(Incident, case_id)).assigned_person_id == bao
        assert not (await session.execute(select(RoleAssignment).where(
            RoleAssignment.person_id == an))).scalars().all()
        to_bao = (await session.execute(select(Outbox.idempotency_key).join(
            Account, Account.id == Outbox.account_id).where(
            Account.person_id == bao))).scalars().all()
        assert any(key.startswith(f"alert:{case_id}:") for key in to_bao)
        assert (await session.execute(select(AuditEvent.via))).scalars().all() == ["cli"]
    assert await asyncio.to_thread(main, ["directory", "deactivate", "0999 999 999"]) == 2
    assert "danh bạ không có ai với số điện thoại" in capsys.readouterr().err


async def test_invite_links_work_before_the_bot_ever_ran_when_a_token_is_set(
        env: Path, fake_telegram, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    assert await asyncio.to_thread(main, ["directory", "import",
                                          *map(str, write_directory(env))]) == 0
    monkeypatch.setenv("SAFESCHOOL_TELEGRAM_TOKEN", fake_telegram.token)
    monkeypatch.setenv("SAFESCHOOL_TELEGRAM_API_URL", fake_telegram.api_url)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["invite", "create", "--role", "officer", "--area",
                                          "HX", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["link"] == f"https://t.me/safeschool_test_bot?start={made['code']}"
    asked = sum(c.method == "getMe" for c in fake_telegram.calls)
    assert await asyncio.to_thread(main, ["school", "codes", "--json"]) == 0
    assert all(r["link"] for r in json.loads(capsys.readouterr().out))
    assert sum(c.method == "getMe" for c in fake_telegram.calls) == asked  # kept, not re-asked


def test_school_public_page_opens_and_closes(env: Path, capsys: pytest.CaptureFixture[str]
                                             ) -> None:
    _import(env)
    capsys.readouterr()
    assert main(["school", "public", "THCS-HX", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["public_page"] is False  # off by default
    assert main(["school", "public", "THCS-HX", "on", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["public_page"] is True and shown["url"].endswith("/chat/s/THCS-HX")
    assert main(["school", "public", "THCS-HX"]) == 0
    assert capsys.readouterr().out.startswith("Trang báo tin công khai của Trường THCS Hồi "
                                              "Xuân đang mở: http")
    assert main(["school", "public", "THCS-HX", "off"]) == 0
    assert "đang đóng" in capsys.readouterr().out
    assert main(["school", "public", "NOPE", "on"]) == 2
    assert "không có trường nào mang mã NOPE" in capsys.readouterr().err
