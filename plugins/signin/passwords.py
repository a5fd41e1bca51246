"""IT account passwords: PBKDF2-SHA256 hashes, checked on a worker thread.

The hash format is the one datasette-auth-passwords made (`pbkdf2_sha256$<iterations>$<salt>$<base64>`),
so hashes made before this plugin existed keep working unchanged.

A check costs about a third of a second of CPU by design. It runs on its own worker thread,
never on the event loop that answers every other page, and only a few may wait at once: a
flood of sign-ins is refused ("busy") instead of queueing up CPU time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 480_000  # datasette-auth-passwords' default, and Django's for 2023
MIN_PASSWORD_LENGTH = 12
HASH_FORMAT = re.compile(r"^pbkdf2_sha256\$([0-9]{1,9})\$([^$\s]+)\$([A-Za-z0-9+/=]+)$")


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: str | None = None) -> str:
    """The stored form of a password: pbkdf2_sha256$iterations$salt$base64(digest)."""
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt.encode("utf-8"), iterations)
    return f"{ALGORITHM}${iterations}${salt}${base64.b64encode(digest).decode('ascii')}"


def is_password_hash(value: str) -> bool:
    """True when value looks like a hash from `app-inventory hash-password`."""
    return HASH_FORMAT.match(value.strip()) is not None


def iterations_of(encoded: str) -> int:
    match = HASH_FORMAT.match(encoded.strip())
    return int(match.group(1)) if match else ITERATIONS


def verify_password(password: str, encoded: str) -> bool:
    """Whether password matches the hash (in constant time); a malformed hash matches nothing."""
    match = HASH_FORMAT.match(encoded.strip())
    if match is None:
        return False
    iterations, salt = int(match.group(1)), match.group(2)
    return secrets.compare_digest(hash_password(password, iterations=iterations, salt=salt), encoded.strip())


def decoy_hash(hashes: list[str]) -> str:
    """A hash no password matches, costing what the configured accounts' hashes cost, to check
    an unknown username against: unknown and known usernames then take the same work."""
    counts = Counter(iterations_of(encoded) for encoded in hashes)
    iterations = counts.most_common(1)[0][0] if counts else ITERATIONS
    # A random digest: no password produces it, and making it costs nothing.
    return f"{ALGORITHM}${iterations}${secrets.token_hex(16)}${base64.b64encode(secrets.token_bytes(32)).decode('ascii')}"


def _verify(password: str, encoded: str) -> bool:
    return verify_password(password, encoded)  # looked up at each call (tests watch it)


class PasswordChecker:
    """Checks passwords on one worker thread; at most max_waiting checks in flight."""

    def __init__(self, *, workers: int = 1, max_waiting: int = 8):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password-check")
        self.max_waiting = max_waiting
        self._in_flight = 0

    async def check(self, password: str, encoded: str) -> bool | None:
        """True or False; None when too many checks are already waiting (refuse, do not queue)."""
        if self._in_flight >= self.max_waiting:
            return None
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, _verify, password, encoded)
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
