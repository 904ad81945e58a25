"""Text to speech for `say` nodes: rendered once, cached on disk, 8 kHz.

pyttsx3 (eSpeak NG) runs in ONE dedicated thread (it crashes when two threads use
it, and its first runAndWait() can return before the file is written), behind a
queue; every file is verified, and `espeak-ng --stdout` is the fallback when
pyttsx3 is missing or misbehaves.  Results are cached by (text, voice, rate,
engine), so a prompt is rendered once, not per call, and survives restarts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes.util
import hashlib
import io
import logging
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from ccswitch.media.resample import to_pcm8k
from ccswitch.media.wav import CrashSafeWav, read_wav

log = logging.getLogger("ccswitch.tts")

ENGINE_VERSION = "1"  # bump to invalidate the cache when rendering changes


class TtsError(RuntimeError):
    pass


def tts_available() -> bool:
    """An engine exists: libespeak-ng for pyttsx3, or the espeak-ng program."""
    return shutil.which("espeak-ng") is not None or (
        ctypes.util.find_library("espeak-ng") is not None and _has_pyttsx3())


def _has_pyttsx3() -> bool:
    try:
        import pyttsx3  # noqa: F401
    except Exception:
        return False
    return True


class _Pyttsx3Worker:
    """The one thread that owns the pyttsx3 engine."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[str, str, int, Path, concurrent.futures.Future[None]] | None]
        self._q = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tts", daemon=True)
        self._thread.start()

    def submit(self, text: str, voice: str, rate: int,
               out: Path) -> concurrent.futures.Future[None]:
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._q.put((text, voice, rate, out, fut))
        return fut

    def stop(self) -> None:
        self._q.put(None)

    def _run(self) -> None:
        try:
            import pyttsx3

            engine: Any = pyttsx3.init()
        except Exception as e:  # no libespeak-ng: every job fails, the caller falls back
            engine = None
            init_error = e
        while True:
            job = self._q.get()
            if job is None:
                return
            text, voice, rate, out, fut = job
            if engine is None:
                fut.set_exception(TtsError(f"pyttsx3 unavailable: {init_error}"))
                continue
            try:
                self._render(engine, text, voice, rate, out)
                fut.set_result(None)
            except Exception as e:
                fut.set_exception(e)

    @staticmethod
    def _render(engine: Any, text: str, voice: str, rate: int, out: Path) -> None:
        engine.setProperty("rate", rate)
        with contextlib.suppress(Exception):  # unknown voice: keep the default
            engine.setProperty("voice", voice)
        for _attempt in range(3):
            if out.exists():
                out.unlink()
            # pyttsx3 prints "Audio saved to ..." on stdout: keep the console clean
            with contextlib.redirect_stdout(io.StringIO()):
                engine.save_to_file(text, str(out))
                engine.runAndWait()
            # runAndWait may return before the file is complete: wait for a stable size
            size = -1
            for _ in range(50):
                if out.exists() and out.stat().st_size == size and size > 44:
                    return
                size = out.stat().st_size if out.exists() else -1
                threading.Event().wait(0.02)
        raise TtsError("pyttsx3 wrote no audio")


class Tts:
    """`await tts.render(text)` -> path of an 8 kHz mono 16-bit WAV (cached)."""

    PYTTSX3_TIMEOUT = 10.0

    def __init__(self, cache_dir: Path, voice: str = "en", rate: int = 160,
                 use_pyttsx3: bool = True) -> None:
        self.cache_dir = cache_dir
        self.voice = voice
        self.rate = rate
        self.renders = 0  # engine invocations (cache misses), for tests and stats
        self._pending: dict[str, asyncio.Future[Path]] = {}
        self._worker: _Pyttsx3Worker | None = None
        self._use_pyttsx3 = use_pyttsx3 and _has_pyttsx3() and \
            ctypes.util.find_library("espeak-ng") is not None

    @property
    def available(self) -> bool:
        return self._use_pyttsx3 or shutil.which("espeak-ng") is not None

    def path_for(self, text: str, voice: str | None = None) -> Path:
        key = f"{ENGINE_VERSION}|{voice or self.voice}|{self.rate}|{text}"
        h = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.cache_dir / h[:2] / f"{h}.wav"

    async def render(self, text: str, voice: str | None = None) -> Path:
        path = self.path_for(text, voice)
        if path.exists():
            return path
        key = str(path)
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            await self._render(text, voice or self.voice, path)
            fut.set_result(path)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: no "never retrieved" warning for waiters-less
            raise
        finally:
            del self._pending[key]
        return path

    async def _render(self, text: str, voice: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # pyttsx3 may write a file late, after runAndWait returned: its scratch directory
        # is never removed (a vanished output directory hangs every later render)
        work = self.cache_dir / ".work"
        work.mkdir(parents=True, exist_ok=True)
        self.renders += 1
        raw = work / f"{path.stem}-{os.getpid()}-{self.renders}.wav"
        try:
            ok = False
            if self._use_pyttsx3:
                if self._worker is None:
                    self._worker = _Pyttsx3Worker()
                try:
                    await asyncio.wait_for(
                        asyncio.wrap_future(self._worker.submit(text, voice, self.rate, raw)),
                        self.PYTTSX3_TIMEOUT)
                    ok = True
                except TimeoutError:
                    # the engine is stuck (a known pyttsx3 failure): stop using it
                    log.warning("pyttsx3 hung; using espeak-ng from now on")
                    self._use_pyttsx3 = False
                except Exception as e:
                    log.warning("pyttsx3 failed (%s); using espeak-ng directly", e)
            if not ok:
                await self._espeak(text, voice, raw)
            pcm = await asyncio.to_thread(self._convert, raw)
        finally:
            with contextlib.suppress(OSError):
                raw.unlink()
        if not pcm:
            raise TtsError(f"no audio rendered for {text[:40]!r}")
        part = path.with_suffix(".part")
        w = CrashSafeWav(part, 1)
        w.append(pcm)
        w.close()
        os.replace(part, path)  # atomic: a half-written prompt is never cached

    async def _espeak(self, text: str, voice: str, out: Path) -> None:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise TtsError("no text-to-speech engine: install espeak-ng")
        proc = await asyncio.create_subprocess_exec(
            exe, "-v", voice, "-s", str(self.rate), "-w", str(out), text,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise TtsError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")

    @staticmethod
    def _convert(raw: Path) -> bytes:
        rate, channels, pcm = read_wav(raw)  # tolerates espeak's fake data length
        return to_pcm8k(pcm, rate, channels)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
