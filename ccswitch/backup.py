"""Online backups of the database and the configuration, and restoring them.

A backup is one `ccswitch-backup-YYYYmmdd-HHMMSS.tar.gz` holding:

    manifest.json   when, which ccswitch schema version, where things came from
    ccswitch.db     a consistent copy made with SQLite's online backup API (safe while
                    the server writes: readers and the writer are not blocked for long)
    config.yaml     the configuration file
    flows/...       every flow file

Scheduled by the server (config `backup: {directory, interval_hours, keep}`), or
on demand with `ccswitch backup [--output DIR]`.  `ccswitch restore FILE` puts
them back; it refuses while the server runs (the database would be replaced under
it), unless --force, which first asks the running server to stop.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("ccswitch.backup")

PREFIX = "ccswitch-backup-"


class BackupError(Exception):
    pass


def _copy_db(src: Path, dst: Path) -> int:
    """SQLite online backup of `src` into `dst`; returns the schema version."""
    s = sqlite3.connect(f"{src.absolute().as_uri()}?mode=ro", uri=True, timeout=10.0)
    d = sqlite3.connect(str(dst))
    try:
        # copy in steps so a long backup does not hold the read lock throughout
        s.backup(d, pages=1024, sleep=0.005)
        version = int(d.execute("PRAGMA user_version").fetchone()[0])
        d.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        d.close()
        s.close()
    return version


def make_backup(config_path: str | Path, output_dir: str | Path | None = None) -> Path:
    """Write a backup archive; returns its path.  Safe while the server runs."""
    from ccswitch.config import load_config

    config_path = Path(config_path)
    cfg = load_config(config_path)
    out = Path(output_dir) if output_dir is not None else Path(cfg.backup.directory)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = out / f"{PREFIX}{stamp}.tar.gz"
    n = 1
    while target.exists():
        n += 1
        target = out / f"{PREFIX}{stamp}-{n}.tar.gz"
    db = Path(cfg.database.path)
    flows = Path(cfg.flows.directory)
    manifest: dict[str, Any] = {
        "created": time.time(), "created_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": str(config_path.absolute()), "database": str(db), "flows": str(flows),
        "schema_version": None, "files": [],
    }
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tmp_db = Path(tmp) / "ccswitch.db"
        if db.exists():
            manifest["schema_version"] = _copy_db(db, tmp_db)
        partial = target.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tar:
            if tmp_db.exists():
                tar.add(tmp_db, "ccswitch.db")
                manifest["files"].append("ccswitch.db")
            tar.add(config_path, "config.yaml")
            manifest["files"].append("config.yaml")
            if flows.is_dir():
                for f in sorted(flows.rglob("*")):
                    if f.is_file():
                        name = "flows/" + f.relative_to(flows).as_posix()
                        tar.add(f, name)
                        manifest["files"].append(name)
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
        os.replace(partial, target)  # a crash never leaves a half archive under the real name
    return target


def prune(directory: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `directory`; returns the deleted."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = sorted(d.glob(f"{PREFIX}*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    gone = []
    for p in found[keep:]:
        with contextlib.suppress(OSError):
            p.unlink()
            gone.append(p)
    return gone


def read_manifest(archive: str | Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            f = tar.extractfile("manifest.json")
            if f is None:
                raise BackupError(f"{archive}: no manifest.json: not a ccswitch backup")
            data: dict[str, Any] = json.loads(f.read())
            return data
    except (tarfile.TarError, KeyError, OSError, ValueError) as e:
        raise BackupError(f"{archive}: not a ccswitch backup ({e})") from None


def restore_backup(archive: str | Path, config_path: str | Path) -> dict[str, Any]:
    """Put the archive's database, config and flows in place (the server must be stopped).

    Current files are kept beside them as `*.pre-restore` (flows: a directory).
    The database and flows go where the *restored* configuration says.
    """
    from ccswitch.config import ConfigError, load_config_text

    manifest = read_manifest(archive)
    config_path = Path(config_path)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tmp, filter="data")
        t = Path(tmp)
        cfg_text = (t / "config.yaml").read_text(encoding="utf-8")
        try:
            cfg = load_config_text(cfg_text, str(config_path), config_path.parent)
        except ConfigError as e:
            raise BackupError(f"the backup's config.yaml is not valid here:\n{e}") from None
        restored: list[str] = []
        if config_path.exists():
            shutil.copy2(config_path, config_path.with_name(config_path.name + ".pre-restore"))
        shutil.copy2(t / "config.yaml", config_path)
        restored.append(str(config_path))
        if (t / "ccswitch.db").exists():
            db = Path(cfg.database.path)
            db.parent.mkdir(parents=True, exist_ok=True)
            if db.exists():
                shutil.copy2(db, db.with_name(db.name + ".pre-restore"))
            for suffix in ("-wal", "-shm"):  # the old journal must not replay over it
                with contextlib.suppress(FileNotFoundError):
                    Path(str(db) + suffix).unlink()
            shutil.copy2(t / "ccswitch.db", db)
            restored.append(str(db))
        if (t / "flows").is_dir():
            flows = Path(cfg.flows.directory)
            if flows.exists():
                old = flows.with_name(flows.name + ".pre-restore")
                if old.exists():
                    shutil.rmtree(old)
                flows.rename(old)
            shutil.copytree(t / "flows", flows)
            restored.append(str(flows))
    return {"manifest": manifest, "restored": restored}
