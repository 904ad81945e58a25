from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ccswitch.storage.cdr import CdrStore, disposition_for, read_last_sync

T0 = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "ccswitch.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[CdrStore]:
    # A long interval: tests decide when to write, with flush().
    s = CdrStore(flush_interval=60)
    await s.open(db_path)
    yield s
    await s.close()


async def count_commits(store: CdrStore) -> list[str]:
    """Start recording the COMMIT statements the store's connection runs."""
    seen: list[str] = []
    assert store._db is not None
    await store._db.set_trace_callback(
        lambda sql: seen.append(sql) if sql.strip().upper() == "COMMIT" else None
    )
    return seen


async def test_lifecycle_answered_call(store: CdrStore, db_path: Path) -> None:
    store.start("u1", "1001", "Alice", "1002", T0, recording="/rec/u1.wav")
    store.answer("u1", T0 + 2.5)
    store.update_extra("u1", queue="sales", wait=1.5)
    store.end("u1", T0 + 62.5, "ANSWERED", "NORMAL_CLEARING")
    assert store.pending == 4
    assert read_last_sync(db_path) == []  # queued, not yet written
    await store.flush()
    assert store.pending == 0
    row = await store.get("u1")
    assert row == {
        "call_uuid": "u1",
        "caller": "1001",
        "caller_name": "Alice",
        "callee": "1002",
        "start": T0,
        "answer": T0 + 2.5,
        "end": T0 + 62.5,
        "duration": 62.5,
        "billsec": 60.0,
        "disposition": "ANSWERED",
        "hangup_cause": "NORMAL_CLEARING",
        "recording": "/rec/u1.wav",
        "interrupted": False,
        "extra": {"queue": "sales", "wait": 1.5},
    }
    assert await store.get("nope") is None


async def test_unanswered_call_has_no_billsec(store: CdrStore) -> None:
    store.start("u2", "1001", None, "1003", T0)
    await store.flush()
    row = await store.get("u2")
    assert row is not None and row["end"] is None and row["duration"] is None
    store.end("u2", T0 + 30, "NO ANSWER", "NO_ANSWER")
    await store.flush()
    row = await store.get("u2")
    assert row is not None
    assert (row["duration"], row["billsec"], row["answer"]) == (30.0, 0.0, None)
    assert row["caller_name"] is None and row["recording"] is None


async def test_first_answer_and_first_end_win(store: CdrStore) -> None:
    store.start("u", "1001", "A", "1002", T0)
    store.start("u", "9999", "B", "9999", T0 + 1)  # a duplicate start is ignored
    store.answer("u", T0 + 1)
    store.answer("u", T0 + 5)
    store.end("u", T0 + 10, "ANSWERED", "NORMAL_CLEARING")
    store.end("u", T0 + 99, "FAILED", "NORMAL_TEMPORARY_FAILURE")
    store.answer("u", T0 + 50)
    await store.flush()
    row = await store.get("u")
    assert row is not None
    assert (row["caller"], row["answer"], row["end"], row["billsec"]) == (
        "1001",
        T0 + 1,
        T0 + 10,
        9.0,
    )
    assert row["disposition"] == "ANSWERED"


async def test_updates_for_unknown_calls_are_harmless(store: CdrStore) -> None:
    store.answer("ghost", T0)
    store.end("ghost", T0, "FAILED", "UNALLOCATED_NUMBER")
    store.update_extra("ghost", x=1)
    await store.flush()
    assert await store.last(10) == []


async def test_update_extra_merges_and_none_removes(store: CdrStore) -> None:
    store.start("u", "1001", None, "1002", T0, extra={"ivr": ["main"], "lang": "en"})
    store.update_extra("u", queue="support", agent={"id": 7, "name": "Bob"})
    await store.flush()
    store.update_extra("u", lang=None, agent={"name": "Rob"}, ivr=["main", "support"])
    await store.flush()
    row = await store.get("u")
    assert row is not None
    assert row["extra"] == {
        "ivr": ["main", "support"],
        "queue": "support",
        "agent": {"id": 7, "name": "Rob"},
    }


async def test_bad_arguments_fail_in_the_caller(store: CdrStore) -> None:
    with pytest.raises(ValueError, match="disposition"):
        store.end("u", T0, "HUNG UP", "NORMAL_CLEARING")
    with pytest.raises(TypeError):
        store.update_extra("u", when=object())
    with pytest.raises(TypeError):
        store.start("u", "1", None, "2", T0, extra={"x": {1, 2}})
    assert store.pending == 0


async def test_batching_many_calls_one_transaction(store: CdrStore, db_path: Path) -> None:
    commits = await count_commits(store)
    n = 600
    for i in range(n):
        uuid = f"call-{i:04d}"
        store.start(uuid, f"1{i:03d}", None, "2000", T0 + i)
        if i % 3:
            store.answer(uuid, T0 + i + 1)
            store.update_extra(uuid, agent=i)
            store.end(uuid, T0 + i + 11, "ANSWERED", "NORMAL_CLEARING")
        else:
            store.end(uuid, T0 + i + 20, "BUSY", "USER_BUSY")
    assert store.pending == (n // 3) * 2 + (n - n // 3) * 4
    await store.flush()
    assert commits == ["COMMIT"]
    rows = await store.search(limit=10_000)
    assert len(rows) == n
    answered = [r for r in rows if r["disposition"] == "ANSWERED"]
    assert len(answered) == n - n // 3
    assert all(r["billsec"] == 10.0 and r["duration"] == 11.0 for r in answered)
    assert all(r["billsec"] == 0 for r in rows if r["disposition"] == "BUSY")
    assert read_last_sync(db_path, 1)[0]["call_uuid"] == "call-0599"
    await store.flush()  # nothing queued: no empty transaction
    assert commits == ["COMMIT"]


async def test_background_flusher_writes_without_flush(db_path: Path) -> None:
    store = CdrStore(flush_interval=0.01)
    await store.open(db_path)
    try:
        commits = await count_commits(store)
        for i in range(50):
            store.start(f"u{i}", "1001", None, "1002", T0 + i)
        # Nothing to await: poll what a second process would see.
        for _ in range(500):
            if len(read_last_sync(db_path, 100)) == 50:
                break
            await asyncio.sleep(0.01)
        assert len(read_last_sync(db_path, 100)) == 50
        assert store.pending == 0
        assert len(commits) == 1  # the 50 calls went in one batch
    finally:
        await store.close()


async def test_close_writes_what_is_queued(db_path: Path) -> None:
    store = CdrStore(flush_interval=60)
    await store.open(db_path)
    store.start("u", "1001", None, "1002", T0)
    store.end("u", T0 + 1, "CANCELLED", "ORIGINATOR_CANCEL")
    await store.close()
    assert [(r["call_uuid"], r["disposition"]) for r in read_last_sync(db_path)] == [
        ("u", "CANCELLED")
    ]
    with pytest.raises(RuntimeError, match="not open"):
        store.start("v", "1001", None, "1002", T0)
    await store.close()  # closing twice is harmless


async def test_failed_write_keeps_the_batch_for_a_retry(store: CdrStore, db_path: Path) -> None:
    store.start("u1", "1001", None, "1002", T0)
    other = sqlite3.connect(db_path)
    other.execute("ALTER TABLE cdr RENAME TO cdr_away")
    other.commit()
    with pytest.raises(sqlite3.OperationalError):
        await store.flush()
    assert store.pending == 1
    store.end("u1", T0 + 5, "FAILED", "NETWORK_OUT_OF_ORDER")
    other.execute("ALTER TABLE cdr_away RENAME TO cdr")
    other.commit()
    other.close()
    await store.flush()
    row = await store.get("u1")
    assert row is not None and row["hangup_cause"] == "NETWORK_OUT_OF_ORDER"


async def test_last_and_search(store: CdrStore) -> None:
    calls = [
        ("a", "1001", "1002", 0, "ANSWERED", {"queue": "sales", "vip": True}),
        ("b", "1002", "1003", 10, "BUSY", {"queue": "support"}),
        ("c", "1003", "1001", 20, "NO ANSWER", {"queue": "sales", "agent": {"id": 7}}),
        ("d", "1001", "1003", 30, "ANSWERED", {}),
    ]
    for uuid, caller, callee, t, disp, extra in calls:
        store.start(uuid, caller, None, callee, T0 + t, extra=extra)
        if disp == "ANSWERED":
            store.answer(uuid, T0 + t + 1)
        store.end(uuid, T0 + t + 5, disp, "NORMAL_CLEARING")
    await store.flush()

    def ids(rows: list[dict[str, object]]) -> list[object]:
        return [r["call_uuid"] for r in rows]

    assert ids(await store.last(2)) == ["d", "c"]
    assert ids(await store.search()) == ["d", "c", "b", "a"]
    assert ids(await store.search(number="1001")) == ["d", "c", "a"]
    assert ids(await store.search(since=T0 + 10, until=T0 + 30)) == ["c", "b"]
    assert ids(await store.search(disposition="ANSWERED")) == ["d", "a"]
    assert ids(await store.search(number="1001", disposition="ANSWERED", limit=1)) == ["d"]
    assert ids(await store.search(extra_filters={"queue": "sales"})) == ["c", "a"]
    assert ids(await store.search(extra_filters={"vip": True})) == ["a"]
    assert ids(await store.search(extra_filters={"agent.id": 7})) == ["c"]
    assert ids(await store.search(extra_filters={"queue": None})) == ["d"]
    with pytest.raises(ValueError, match="extra filter key"):
        await store.search(extra_filters={"x') OR 1=1 --": 1})
    with pytest.raises(ValueError, match="disposition"):
        await store.search(disposition="answered")


# -- crash recovery ---------------------------------------------------------

CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from ccswitch.storage.cdr import CdrStore

    async def main(path, rec):
        store = CdrStore(flush_interval=60)
        await store.open(path)
        t0 = {t0!r}
        store.start("talking", "1001", "Alice", "1002", t0, recording=rec)
        store.answer("talking", t0 + 2)
        store.start("ringing", "1001", None, "1003", t0 + 5)
        store.start("answered-no-rec", "1002", None, "1003", t0 + 6)
        store.answer("answered-no-rec", t0 + 8)
        store.start("done", "1003", None, "1001", t0)
        store.end("done", t0 + 3, "BUSY", "USER_BUSY")
        await store.flush()
        store.start("never-written", "1001", None, "1002", t0 + 9)
        os._exit(1)  # crash: no close, no checkpoint, queued work lost

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
).format(t0=T0)


async def test_recover_interrupted_after_a_crash(tmp_path: Path, db_path: Path) -> None:
    rec = tmp_path / "talking.wav"
    rec.write_bytes(b"RIFF")
    os.utime(rec, (T0 + 40, T0 + 40))  # the recorder's last write
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_WRITER, str(db_path), str(rec)
    )
    assert await proc.wait() == 1
    assert (db_path.parent / "ccswitch.db-wal").exists()  # killed before a checkpoint

    store = CdrStore(flush_interval=60)
    await store.open(db_path)
    try:
        assert await store.recover_interrupted(now=T0 + 100) == 3
        rows = {r["call_uuid"]: r for r in await store.last(10)}
        assert set(rows) == {"talking", "ringing", "answered-no-rec", "done"}

        talking = rows["talking"]
        assert talking["interrupted"] is True
        assert talking["hangup_cause"] == "INTERRUPTED"
        assert talking["disposition"] == "ANSWERED"
        assert (talking["end"], talking["duration"], talking["billsec"]) == (T0 + 40, 40.0, 38.0)

        ringing = rows["ringing"]
        assert (ringing["disposition"], ringing["hangup_cause"]) == ("FAILED", "INTERRUPTED")
        assert (ringing["end"], ringing["duration"], ringing["billsec"]) == (T0 + 5, 0.0, 0.0)

        no_rec = rows["answered-no-rec"]
        assert (no_rec["disposition"], no_rec["end"], no_rec["billsec"]) == ("ANSWERED", T0 + 8, 0)

        assert rows["done"]["interrupted"] is False
        assert rows["done"]["disposition"] == "BUSY"
        assert await store.recover_interrupted(now=T0 + 200) == 0  # idempotent
    finally:
        await store.close()


async def test_recovery_end_is_never_after_now(store: CdrStore, tmp_path: Path) -> None:
    rec = tmp_path / "r.wav"
    rec.write_bytes(b"")
    os.utime(rec, (T0 + 1000, T0 + 1000))  # a clock that jumped
    store.start("u", "1001", None, "1002", T0, recording=rec)
    store.answer("u", T0 + 1)
    assert await store.recover_interrupted(now=T0 + 50) == 1
    row = await store.get("u")
    assert row is not None and (row["end"], row["billsec"]) == (T0 + 50, 49.0)


# -- readers beside the writer --------------------------------------------


async def test_concurrent_reading_while_writing(db_path: Path) -> None:
    store = CdrStore(flush_interval=60)
    await store.open(db_path)
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        # The CLI's path: a separate sqlite3 connection in another thread.
        while not done.is_set():
            try:
                seen.append(len(read_last_sync(db_path, 100_000)))
            except BaseException as e:
                errors.append(e)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        total = 0
        for batch in range(20):
            for i in range(50):
                uuid = f"b{batch}-{i}"
                store.start(uuid, "1001", None, "1002", T0 + total)
                store.answer(uuid, T0 + total + 1)
                store.end(uuid, T0 + total + 2, "ANSWERED", "NORMAL_CLEARING")
                total += 1
            await store.flush()
            # Also read through the store's own connection meanwhile.
            assert len(await store.search(limit=100_000)) == total
    finally:
        done.set()
        await asyncio.to_thread(thread.join)
        await store.close()
    assert errors == []
    assert seen, "the reader never ran"
    assert seen == sorted(seen)  # never a partial or rolled-back view
    assert all(n % 50 == 0 for n in seen)  # whole batches only: one transaction each
    assert len(read_last_sync(db_path, 100_000)) == 1000


def test_read_last_sync_without_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_last_sync(tmp_path / "none.db")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert read_last_sync(empty) == []


@pytest.mark.parametrize(
    ("cause", "answered", "disposition"),
    [
        ("NORMAL_CLEARING", True, "ANSWERED"),
        ("USER_BUSY", False, "BUSY"),
        ("NO_ANSWER", False, "NO ANSWER"),
        ("NO_USER_RESPONSE", False, "NO ANSWER"),
        ("ORIGINATOR_CANCEL", False, "CANCELLED"),
        ("UNALLOCATED_NUMBER", False, "FAILED"),
    ],
)
def test_disposition_for(cause: str, answered: bool, disposition: str) -> None:
    assert disposition_for(cause, answered) == disposition
