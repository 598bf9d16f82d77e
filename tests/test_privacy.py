"""Children's data at rest: what a copied database file, a backup or a query shows of a case
(nothing readable), key rotation, and a wrong key."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bot.cli import main
from bot.services.cases import reporter_of
from bot.services.directory import normalise_phone
from storage import crypto, db, rotation
from storage.models import (
    Account,
    Base,
    CaseAccess,
    Conversation,
    Incident,
    IncidentEvent,
    Outbox,
)
from tests.auxil.faults import Launcher
from tests.auxil.people import (
    LIAISON_HX,
    OFFICER_HX,
    PARENT_HX,
    PHONES,
    Chat,
    ask_and_answer,
    link_everyone,
)
from tests.conftest import TEST_DATA_KEY, TEST_RELAY_KEY
from tests.test_reports import file_report
from tests.test_reports import people as people  # the fixture, reused

pytestmark = pytest.mark.usefixtures("directory")

WORDS = "Mận Trần bị bạn lớp 8 giật tóc sau nhà xe"
PLACE = "Góc khuất sau căng tin dãy B"
QUESTION = "Em Mận có phải đi viện không?"
ANSWER = "Không ạ, chỉ trầy xước ở cánh tay"
SECRETS = ["Mận Trần", "giật tóc", "nhà xe", "11 và 13 tuổi"]


def _raw_rows(sync_conn) -> str:
    """Every row of every table as the database gives it, no type decoding: what a query,
    an export or a backup's data sees."""
    out = []
    for table in Base.metadata.sorted_tables:
        for row in sync_conn.execute(text(f"SELECT * FROM {table.name}")):
            out.append(" ".join(str(v) for v in row))
    return "\n".join(out)


def _files_of(database_url: str) -> bytes:
    """The SQLite file and its write-ahead log, as a copy of them would hold."""
    path = Path(database_url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def _pg_dump(database_url: str) -> str | None:
    """`pg_dump --data-only` of the test database, when the tool is installed."""
    if shutil.which("pg_dump") is None:
        return None
    plain = database_url.replace("postgresql+asyncpg://", "postgresql://")
    return subprocess.run(["pg_dump", "--data-only", plain], capture_output=True, text=True,
                          check=True, timeout=120).stdout


async def test_a_report_leaves_no_readable_words_at_rest(
        app, fake_telegram, sessions, clock, engine, database_url) -> None:
    await link_everyone(sessions, clock)
    teacher = Chat(fake_telegram, LIAISON_HX)
    await file_report(teacher, description=WORDS)
    [alert] = await Chat(fake_telegram, OFFICER_HX).wait(1)
    assert "giật tóc" in alert  # the officer reads it: encryption is below the code
    async with sessions() as session:
        incident = (await session.execute(select(Incident))).scalar_one()
        assert incident.description == WORDS and incident.children == "2 em, 11 và 13 tuổi"
    await app.worker.settled()
    async with engine.connect() as conn:
        raw = await conn.run_sync(_raw_rows)
    assert "Mận" not in raw and all(secret not in raw for secret in SECRETS)
    assert crypto.keyring().current_prefix() in raw  # encrypted, not merely absent
    if database_url.startswith("sqlite"):
        await engine.dispose()  # everything written out to the file
        files = _files_of(database_url)
        assert files and all(secret.encode() not in files for secret in SECRETS)
    else:
        dump = _pg_dump(database_url)
        if dump is not None:
            assert "INSERT" in dump or "COPY" in dump
            assert all(secret not in dump for secret in SECRETS)


async def test_rotation_moves_every_value_to_the_new_key_and_resumes_after_a_stop(
        app, fake_telegram, sessions, clock, engine) -> None:
    await link_everyone(sessions, clock)
    await file_report(Chat(fake_telegram, LIAISON_HX), description=WORDS)
    await app.worker.settled()
    old = crypto.keyring().keys[0]
    new = crypto.generate_key()
    try:
        crypto.configure([new, old])  # the new key first: it encrypts from now on
        before = await rotation.remaining(engine)
        assert before.total > 5 and before.columns["incidents.description"] == 1

        class Killed(Exception):
            pass

        def die_after_first_batch(done: int) -> None:
            raise Killed(done)

        with pytest.raises(Killed) as killed:  # killed after its first committed batch
            await rotation.rotate(engine, batch=2, progress=die_after_first_batch)
        first = killed.value.args[0]
        assert 0 < first <= 2
        assert (await rotation.remaining(engine)).total == before.total - first
        rewritten = await rotation.rotate(engine, batch=2)  # started again: resumes
        assert rewritten == before.total - first  # nothing done twice, nothing left
        assert (await rotation.remaining(engine)).total == 0
        crypto.configure([new])  # the old key is gone: everything still reads
        async with sessions() as session:
            incident = (await session.execute(select(Incident))).scalar_one()
            assert incident.description == WORDS
            assert (await session.execute(select(IncidentEvent.data))).scalars().all()
            assert (await session.execute(select(Outbox.payload))).scalars().all()
            assert (await session.execute(select(Conversation.data))).scalars().all() is not None
    finally:
        crypto.configure([old])


async def test_a_wrong_or_missing_key_is_one_sentence_and_exit_2(
        app, fake_telegram, sessions, clock, database_url, monkeypatch, capsys) -> None:
    await link_everyone(sessions, clock)
    await file_report(Chat(fake_telegram, LIAISON_HX), description=WORDS)
    await app.stop()
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", database_url)
    try:
        monkeypatch.setenv("SAFESCHOOL_DATA_KEYS", crypto.generate_key())  # not the data's
        assert await asyncio.to_thread(main, ["keys", "rotate", "--lang", "en"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("safeschool: data was encrypted with key ")
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        monkeypatch.setenv("SAFESCHOOL_DATA_KEYS", "not-a-key")
        assert await asyncio.to_thread(main, ["keys", "rotate"]) == 2
        assert "khóa thứ 1 trong SAFESCHOOL_DATA_KEYS không hợp lệ" in capsys.readouterr().err
    finally:
        crypto.configure([TEST_DATA_KEY])  # the command line reconfigured this process


async def test_keys_generate_prints_a_usable_key(capsys) -> None:
    assert await asyncio.to_thread(main, ["keys", "generate"]) == 0
    key = capsys.readouterr().out.strip()
    assert crypto.parse_keys(key) == [key] and crypto.key_id(key) != crypto.key_id(
        crypto.generate_key())


async def test_the_migration_encrypts_rows_written_before_it(tmp_path) -> None:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await db.upgrade(engine, "0014")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO areas (id, code, name) VALUES (1, 'HX', 'X')"))
            await conn.execute(text(
                "INSERT INTO schools (id, code, name, area_id, parent_code) "
                "VALUES (1, 'S', 'T', 1, 'P')"))
            await conn.execute(text(
                "INSERT INTO incidents (id, ref, school_id, area_id, reporter_role, anonymous,"
                " urgent, category, status, description, place, latitude, created_at,"
                " updated_at, escalation_step) VALUES (1, 'HX-1', 1, 1, 'liaison', 0, 0,"
                " 'bullying', 'new', :d, 'nhà xe', 19.5, '2026-11-01 00:00:00',"
                " '2026-11-01 00:00:00', 0)"), {"d": WORDS})
            # An anonymous parent's report of before: its reporter named in the open.
            await conn.execute(text(
                "INSERT INTO people (id, phone, created_at) VALUES (5, '0912345678',"
                " '2026-11-01 00:00:00')"))
            await conn.execute(text(
                "INSERT INTO accounts (id, channel, external_id, person_id, created_at,"
                " code_failures) VALUES (9, 'telegram', '921', 5, '2026-11-01 00:00:00', 0)"))
            await conn.execute(text(
                "INSERT INTO incidents (id, ref, school_id, area_id, reporter_person_id,"
                " reporter_account_id, reporter_role, anonymous, urgent, category, status,"
                " created_at, updated_at, escalation_step) VALUES (2, 'HX-2', 1, 1, 5, 9,"
                " 'parent', 1, 0, 'bullying', 'new', '2026-11-01 00:00:00',"
                " '2026-11-01 00:00:00', 0)"))
            await conn.execute(text(
                "INSERT INTO incident_events (incident_id, at, actor_person_id, actor_role,"
                " kind, data) VALUES (2, '2026-11-01 00:00:00', 5, 'reporter', 'answer',"
                " '{}')"))
        await db.upgrade(engine)
        async with engine.connect() as conn:
            raw = await conn.run_sync(_raw_rows)
            sealed = (await conn.execute(text(
                "SELECT reporter_person_id, reporter_account_id, reporter_seal FROM incidents"
                " WHERE id = 2"))).one()
            actor = (await conn.execute(text(
                "SELECT actor_person_id FROM incident_events WHERE incident_id = 2"))).scalar()
        assert "giật tóc" not in raw and "nhà xe" not in raw
        assert (sealed[0], sealed[1], actor) == (None, None, None)
        assert crypto.relay().unseal(sealed[2]) == (5, 9)
        async with db.sessionmaker(engine)() as session:
            incident = await session.get(Incident, 1)
            assert (incident.description, incident.place, incident.latitude) == (
                WORDS, "nhà xe", 19.5)
    finally:
        await engine.dispose()


async def test_an_anonymous_reporter_cannot_be_found_in_the_database_without_the_relay_key(
        app, fake_telegram, sessions, people) -> None:
    parent = Chat(fake_telegram, PARENT_HX)
    await file_report(parent, anonymous=True, description=WORDS)
    officer = Chat(fake_telegram, OFFICER_HX)
    await officer.wait(1)
    async with sessions() as session:
        incident = (await session.execute(select(Incident))).scalar_one()
        account = (await session.execute(select(Account).where(
            Account.external_id == str(PARENT_HX)))).scalar_one()
    # The whole relay works: the officer asks, the parent answers, the parent hears of the
    # acknowledgement and finds the case in /mycases.
    question = await ask_and_answer(officer, parent, incident.id,
                                    "Anh/chị có chụp lại tin nhắn không?", "Có, tôi sẽ gửi sau.")
    assert "chụp lại" in question
    seen = parent.mark()
    await officer.tap(f"case:ack:{incident.id}")
    [acknowledged] = await parent.since(seen)
    assert incident.ref in acknowledged
    [mine] = await parent.say("/mycases")
    assert incident.ref in mine
    await app.worker.settled()

    # The database alone does not say who reported it: no id of the parent's person or
    # account beside the case, its timeline, its access log or the messages about it.
    async with sessions() as session:
        row = await session.get(Incident, incident.id)
        assert (row.reporter_person_id, row.reporter_account_id) == (None, None)
        assert row.reporter_seal and '"p"' not in row.reporter_seal  # a token, not JSON
        actors = set((await session.execute(select(IncidentEvent.actor_person_id).where(
            IncidentEvent.incident_id == incident.id))).scalars())
        lookers = set((await session.execute(select(CaseAccess.person_id).where(
            CaseAccess.incident_id == incident.id))).scalars())
        assert account.person_id not in actors | lookers
        assert len(lookers - {None}) >= 1  # the officer's looks are there, named
        keys = (await session.execute(select(Outbox.idempotency_key).where(
            Outbox.account_id == account.id))).scalars().all()
        assert keys and not any(str(incident.id) in key.split(":") for key in keys)
        # The relay key opens the seal; the data keys do not, and another key finds nothing.
        assert reporter_of(row) == (account.person_id, account.id)
        try:
            crypto.configure_relay(crypto.generate_key())
            with pytest.raises(crypto.DataKeyError):
                reporter_of(row)
            crypto.configure_relay(None)
            with pytest.raises(crypto.DataKeyError):
                reporter_of(row)
        finally:
            crypto.configure_relay(TEST_RELAY_KEY)


async def test_keys_init_writes_the_missing_keys_once(tmp_path, monkeypatch, capsys) -> None:
    env = tmp_path / ".env"
    env.write_text("SAFESCHOOL_TELEGRAM_TOKEN=1:x", encoding="utf-8")
    monkeypatch.delenv("SAFESCHOOL_DATA_KEYS")
    monkeypatch.delenv("SAFESCHOOL_RELAY_KEY")
    assert await asyncio.to_thread(main, ["keys", "init", "--env-file", str(env)]) == 0
    lines = dict(line.split("=", 1) for line in env.read_text().splitlines())
    assert lines["SAFESCHOOL_TELEGRAM_TOKEN"] == "1:x"
    assert crypto.parse_keys(lines["SAFESCHOOL_DATA_KEYS"])
    assert crypto.parse_relay_key(lines["SAFESCHOOL_RELAY_KEY"])
    assert lines["SAFESCHOOL_DATA_KEYS"] != lines["SAFESCHOOL_RELAY_KEY"]
    assert "SAFESCHOOL_DATA_KEYS, SAFESCHOOL_RELAY_KEY" in capsys.readouterr().out
    before = env.read_text()
    assert await asyncio.to_thread(main, ["keys", "init", "--env-file", str(env)]) == 0
    assert env.read_text() == before  # a key is never replaced: that would lose the data


@pytest.mark.parametrize("missing", ["SAFESCHOOL_DATA_KEYS", "SAFESCHOOL_RELAY_KEY"])
async def test_the_bot_does_not_start_without_its_keys(
        missing, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("SAFESCHOOL_TELEGRAM_TOKEN", "1:not-used")
    monkeypatch.setenv("SAFESCHOOL_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv(missing, "")  # as a copied env.example leaves it
    try:
        assert await asyncio.to_thread(main, ["run", "--lang", "en"]) == 2
    finally:
        crypto.configure([TEST_DATA_KEY])
        crypto.configure_relay(TEST_RELAY_KEY)
    err = capsys.readouterr().err
    assert f"{missing} is not set" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()  # refused before anything was written


async def test_a_whole_case_at_debug_level_leaves_no_case_text_phone_or_secret_in_the_log(
        database_url, fake_telegram, sessions, clock, tmp_path) -> None:
    """A real `safeschool run --log-level DEBUG`: a teacher reports (a place typed in), the
    officer acknowledges, asks, the teacher answers, the officer reads the case and closes it;
    then the log is searched for every word of it, every phone and every secret."""
    await link_everyone(sessions, clock)
    launcher = Launcher(database_url, fake_telegram, tmp_path)
    try:
        bot = launcher.start(log_level="DEBUG")
        teacher, officer = Chat(fake_telegram, LIAISON_HX), Chat(fake_telegram, OFFICER_HX)
        await fake_telegram.wait_for(
            lambda: any(c.method == "getUpdates" for c in fake_telegram.calls), 60)
        await teacher.say("/report")
        await teacher.tap("report:danger:no")
        await teacher.tap("report:cat:bullying")
        await teacher.say(WORDS)
        await teacher.tap("report:when:today")
        await teacher.say(PLACE)
        await teacher.say("2 em, 11 và 13 tuổi")
        await teacher.tap("report:anon:no")
        await teacher.tap("report:send")
        await officer.wait(1)
        async with sessions() as session:
            case = (await session.execute(select(Incident))).scalar_one()
        await officer.tap(f"case:ack:{case.id}")
        await ask_and_answer(officer, teacher, case.id, QUESTION, ANSWER)
        [shown] = await officer.say(f"/case {case.ref}")
        assert WORDS in shown and PLACE in shown  # the case really went through
        await officer.tap(f"case:close:{case.id}")
        await officer.tap(f"case:close:{case.id}:handled_by_police")
        assert await bot.stop() == 0
    finally:
        launcher.close()
    logs = launcher.logs()
    assert "DEBUG" in logs and case.ref in logs  # it did log, at DEBUG, about this case
    words = [*SECRETS, PLACE, QUESTION, ANSWER, *PHONES.values(), *(
        normalise_phone(p) for p in PHONES.values()), fake_telegram.token,
        fake_telegram.token.split(":", 1)[1], TEST_DATA_KEY, TEST_RELAY_KEY]
    leaked = [w for w in words if w in logs or json.dumps(w)[1:-1] in logs]
    assert not leaked, f"in the log: {leaked}"
