"""Files that hold staff and student data are the owner's alone (0600, folders 0700), whatever
the umask: the inventory, its -wal and -shm, the lock files, the dry-run outbox."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

from plugins.alerts.smtp import OutboxTransport
from scanner import store
from scanner.scan import ScanLock

ROOT = Path(__file__).parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def with_umask_022():
    os.umask(0o022)


def test_the_commands_leave_nothing_readable_by_others(tmp_path):
    """The real command line, under the common umask 022: a demo scan, then a dry-run alerts send."""
    config = tmp_path / "app-inventory.toml"
    config.write_text('[alerts]\nfrom_address = "IT <it@springfield.example>"\nit_digest_to = ["it@springfield.example"]\n',
                      encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    db = work / "district.db"
    outbox = work / "outbox"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in (["demo", "--users", "10", "--no-serve"], ["alerts", "send", "--dry-run", "--outbox", str(outbox)]):
        completed = subprocess.run([sys.executable, "-m", "scanner", "--db", str(db), "--config", str(config), *command],
                                   capture_output=True, text=True, env=env, cwd=work, preexec_fn=with_umask_022, timeout=300)
        assert completed.returncode == 0, completed.stdout + completed.stderr
    written = sorted(path for path in work.rglob("*"))
    files = [path for path in written if path.is_file()]
    assert {db, Path(f"{db}.lock"), Path(f"{db}.alerts.lock")} <= set(files)
    assert any(path.suffix == ".eml" for path in files)
    assert {path: oct(mode(path)) for path in files} == {path: oct(0o600) for path in files}
    folders = [path for path in written if path.is_dir()]
    assert folders and {path: oct(mode(path)) for path in folders} == {path: oct(0o700) for path in folders}
    # SQLite gives the -wal and -shm files the database's own mode.
    connection = sqlite3.connect(db)
    try:
        connection.execute("select count(*) from users").fetchone()
        for suffix in ("-wal", "-shm"):
            assert oct(mode(Path(f"{db}{suffix}"))) == oct(0o600), suffix
    finally:
        connection.close()


def test_the_library_creates_private_files_whatever_the_umask(tmp_path):
    """Callers that are not the command line (the demo, tests, a district's script) get the same."""
    old = os.umask(0o022)
    try:
        db = tmp_path / "inventory.db"
        store.open_db(str(db)).close()
        with ScanLock(db):
            pass
        with OutboxTransport(tmp_path / "outbox" / "run-1") as outbox:
            message = EmailMessage()
            message["Subject"], message["From"], message["To"] = "Apps", "it@district.org", "student@district.org"
            message.set_content("hello")
            outbox.deliver(message, "it@district.org", ["student@district.org"])
    finally:
        os.umask(old)
    assert oct(mode(db)) == oct(0o600)
    assert oct(mode(Path(f"{db}.lock"))) == oct(0o600)
    assert oct(mode(tmp_path / "outbox")) == oct(0o700) and oct(mode(tmp_path / "outbox" / "run-1")) == oct(0o700)
    assert [oct(mode(path)) for path in (tmp_path / "outbox" / "run-1").iterdir()] == [oct(0o600)]
