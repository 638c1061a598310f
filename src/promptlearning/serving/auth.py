"""API keys (stored as sha256 hashes, compared in constant time) and per-key rate limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from promptlearning.errors import PromptLearningError
from promptlearning.serving.errors import APIError


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return "pl-" + secrets.token_urlsafe(32)


def add_key_to_file(path: str | Path) -> str:
    """Make a key, append its hash to ``path`` (created with mode 600) and return the key: it is
    shown once and never stored in clear."""
    path = Path(path)
    key = new_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(hash_key(key) + "\n")
    return key


class KeyStore:
    """The accepted keys, as hashes: keys given in clear are hashed at start."""

    def __init__(self, keys: list[str] | tuple[str, ...] = (), keys_file: str | Path | None = None) -> None:
        self.hashes = [hash_key(k) for k in keys]
        if keys_file is not None:
            path = Path(keys_file)
            if not path.is_file():
                raise PromptLearningError(
                    f"API keys file {path} does not exist (make one with `promptlearning keygen`)"
                )
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if len(line) != 64 or any(c not in "0123456789abcdef" for c in line.lower()):
                    raise PromptLearningError(
                        f"{path} line {number} is not a sha256 hash: the file stores hashes of keys, never keys "
                        "(`promptlearning keygen FILE` adds one)"
                    )
                self.hashes.append(line.lower())

    def identify(self, presented: str | None) -> str | None:
        """The id (hash prefix) of a valid key, else ``None``. Every stored hash is compared, in
        constant time, whatever matches."""
        if not presented:
            return None
        digest = hash_key(presented)
        found = None
        for stored in self.hashes:
            if hmac.compare_digest(digest, stored):
                found = stored[:12]
        return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class RateLimiter:
    """Requests and tokens per minute per key, over a sliding 60-second window (0 means no limit)."""

    def __init__(self, requests_per_minute: int = 0, tokens_per_minute: int = 0) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def charge_request(self, key: str) -> None:
        if not self.requests_per_minute:
            return
        now = time.monotonic()
        with self._lock:
            window = self._requests.setdefault(key, deque())
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= self.requests_per_minute:
                raise self._limited(f"{self.requests_per_minute} requests per minute", window[0] + 60 - now)
            window.append(now)

    def charge_tokens(self, key: str, tokens: int) -> None:
        if not self.tokens_per_minute:
            return
        if tokens > self.tokens_per_minute:
            raise APIError(
                429,
                f"this request needs {tokens} tokens, more than the {self.tokens_per_minute} per "
                "minute allowed for a key",
                code="rate_limit_exceeded",
            )
        now = time.monotonic()
        with self._lock:
            window = self._tokens.setdefault(key, deque())
            while window and window[0][0] <= now - 60:
                window.popleft()
            used = sum(n for _, n in window)
            if used + tokens > self.tokens_per_minute:
                raise self._limited(f"{self.tokens_per_minute} tokens per minute", window[0][0] + 60 - now)
            window.append((now, tokens))

    @staticmethod
    def _limited(what: str, wait: float) -> APIError:
        seconds = max(1, int(wait + 0.999))
        return APIError(
            429,
            f"rate limit of {what} reached; retry in {seconds} s",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds)},
        )


SESSION_COOKIE = "promptlearning_session"
UI_HEADER = "x-promptlearning-ui"  # sent by the UI's own scripts: a cross-site form cannot set it


class BrowserSessions:
    """The web UI's sign-ins: a key is checked once, then the browser holds a random session token
    (an HttpOnly, SameSite=Strict cookie that lasts the browser session), never the key itself."""

    MAX_SESSIONS = 1000

    def __init__(self) -> None:
        self._sessions: dict[str, str] = {}  # token -> key id
        self._lock = threading.Lock()

    def open(self, key_id: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._sessions) >= self.MAX_SESSIONS:  # the oldest sign-in goes first
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[token] = key_id
        return token

    def identify(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            return self._sessions.get(token)

    def close(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)
