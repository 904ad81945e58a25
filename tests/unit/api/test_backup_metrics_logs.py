"""Backups without a server, Prometheus text, and call-tagged logs."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sqlite3
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from ccswitch import logctx
from ccswitch.api.metrics import Metrics
from ccswitch.backup import BackupError, make_backup, prune, read_manifest, restore_backup
from ccswitch.storage.users import UserStore
from tests.unit.api.conftest import stub_server


def _setup(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("database: {path: var/db.sqlite}\nflows: {directory: flows}\n")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "main.yaml").write_text("flow: main\n")
    s = UserStore()
    s.open_sync(tmp_path / "var" / "db.sqlite")
    s.add("ann", "agent", "h")
    s.close()
    return cfg


def test_backup_restore_round_trip(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    # a writer holding the database open (as the server does) does not stop the backup
    live = sqlite3.connect(tmp_path / "var" / "db.sqlite")
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("INSERT INTO audit (time, action) VALUES (1, 'x')")
    live.commit()
    archive = make_backup(cfg, tmp_path / "bk")
    live.close()
    with tarfile.open(archive) as tar:
        assert {"ccswitch.db", "config.yaml", "flows/main.yaml", "manifest.json"} <= set(
            tar.getnames())
    assert read_manifest(archive)["schema_version"] >= 3
    # damage everything, then restore
    s = UserStore()
    s.open_sync(tmp_path / "var" / "db.sqlite")
    s.delete("ann")
    s.close()
    (tmp_path / "flows" / "main.yaml").write_text("broken")
    cfg.write_text(cfg.read_text() + "# edited\n")
    r = restore_backup(archive, cfg)
    assert len(r["restored"]) == 3
    s = UserStore()
    s.open_sync(tmp_path / "var" / "db.sqlite")
    assert s.get("ann") is not None
    s.close()
    assert (tmp_path / "flows" / "main.yaml").read_text() == "flow: main\n"
    assert "# edited" not in cfg.read_text()
    assert (tmp_path / "var" / "db.sqlite.pre-restore").exists()
    assert (tmp_path / "flows.pre-restore" / "main.yaml").read_text() == "broken"
    with pytest.raises(BackupError):
        read_manifest(cfg)


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for i in range(5):
        p = tmp_path / f"ccswitch-backup-2026010{i}-000000.tar.gz"
        p.write_bytes(b"x")
        t = time.time() - 100 + i
        import os

        os.utime(p, (t, t))
    gone = prune(tmp_path, 2)
    assert len(gone) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ccswitch-backup-20260103-000000.tar.gz", "ccswitch-backup-20260104-000000.tar.gz"]


async def test_metrics_text_format(tmp_path: Path) -> None:
    server: Any = stub_server(tmp_path)
    server.queues = type("Q", (), {"queues_info": staticmethod(lambda: [{
        "name": "sales", "waiting": 2, "longest_wait": 12.5, "service_level_today": 80.0,
        "agents": {"available": 1, "paused": 0}, "offered": 3, "answered": 1,
        "abandoned": 0}])})()
    m = Metrics(server)
    m.start()
    await asyncio.sleep(0.6)  # one lag probe
    server.gc_watch.install()
    try:
        gc.collect()  # a full collection, timed
    finally:
        server.gc_watch.uninstall()
    server.bus.publish("CHANNEL_HANGUP", channel="c1", linkedid="c1", answered=True,
                       cause="NORMAL_CLEARING")
    server.bus.publish("CHANNEL_HANGUP", channel="c2", linkedid="c2", answered=False,
                       cause="USER_BUSY")
    text = m.render()
    m.stop()
    lines = text.splitlines()
    samples = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines
               if not ln.startswith("#")}
    assert samples['ccswitch_calls_total{disposition="ANSWERED"}'] == 1
    assert samples['ccswitch_calls_total{disposition="BUSY"}'] == 1
    assert samples['ccswitch_queue_waiting{queue="sales"}'] == 2
    assert samples['ccswitch_queue_service_level_ratio{queue="sales"}'] == 0.8
    assert samples['ccswitch_queue_agents{queue="sales",state="available"}'] == 1
    assert 0 <= samples["ccswitch_event_loop_lag_seconds"] < 1
    assert samples['ccswitch_gc_collections_total{generation="2"}'] >= 1
    assert samples['ccswitch_gc_pause_seconds_max{generation="2"}'] > 0
    assert "ccswitch_rtp_jitter_ms_max" in samples and "ccswitch_registrations" in samples
    # every sample's family has HELP and TYPE
    for name in {k.split("{")[0] for k in samples}:
        assert f"# TYPE {name} " in text and f"# HELP {name} " in text


async def test_logs_carry_the_call_uuid(caplog: pytest.LogCaptureFixture) -> None:
    fmt = logctx.JsonFormatter()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    h = Keep()
    h.addFilter(logctx.CallFilter())
    log = logging.getLogger("ccswitch.test")
    log.addHandler(h)
    log.setLevel(logging.INFO)

    async def call() -> None:
        logctx.bind_call("abc123")
        log.info("in the call")
        await asyncio.ensure_future(child())

    async def child() -> None:
        log.info("in a task the call started")

    try:
        await asyncio.ensure_future(call())
        log.info("outside")
    finally:
        log.removeHandler(h)
    out = [json.loads(fmt.format(r)) for r in records]
    assert [o.get("call") for o in out] == ["abc123", "abc123", None]
    assert out[0]["msg"] == "in the call" and out[0]["level"] == "info"
    text = logctx.TextFormatter().format(records[0])
    assert "[call=abc123] in the call" in text


async def test_scheduled_backups_keep_the_newest(tmp_path: Path) -> None:
    from ccswitch.api.http import Operations

    cfg = tmp_path / "config.yaml"
    # an interval of ~0.36 s, keeping 2 archives
    cfg.write_text("database: {path: db.sqlite}\n"
                   "backup: {directory: bk, interval_hours: 0.0001, keep: 2}\n")
    server: Any = stub_server(tmp_path, "backup: {directory: bk, interval_hours: 0.0001, "
                                        "keep: 2}\n")
    store = UserStore()
    await store.open(tmp_path / "db.sqlite")
    store.close()
    ops = Operations(server)
    task = asyncio.ensure_future(ops._backups())
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            made = sorted((tmp_path / "bk").glob("ccswitch-backup-*.tar.gz"))
            if len(made) >= 2:
                break
        await asyncio.sleep(1.2)  # more runs: still only the newest two are kept
    finally:
        task.cancel()
    made = sorted((tmp_path / "bk").glob("ccswitch-backup-*.tar.gz"))
    assert len(made) == 2
    assert all(read_manifest(p)["schema_version"] >= 3 for p in made)
