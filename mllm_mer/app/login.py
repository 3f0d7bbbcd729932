"""The app's login check: a brake on guessing that never waits on the event loop.

Gradio calls a synchronous auth function on its event loop, so a brake that sleeps freezes every
user's page while someone guesses. This one only counts and refuses:
- per address: after `max_failures` wrong logins within `window_s`, that address's logins are refused
  for `lockout_s` (no guessing at speed from one place);
- per account: after `free_failures` wrong logins in a row, the account takes no login for a window
  that doubles with each further failure, capped at `account_cap_s` (rotating addresses buys nothing),
  and a right password resets it. Attempts refused inside a window are not counted, so the window
  never grows past the cap: the owner waits at most that long for a fresh session. An address the
  owner has logged in from (within `known_s`) skips the account window, so a stranger elsewhere
  cannot keep the owner out at all.
"""
from __future__ import annotations

import contextvars
import secrets
import threading
import time
from collections.abc import Callable

# The peer address of the request being served (set by ClientAddress; the login check reads it).
CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("mllm_mer_client", default="?")


class ClientAddress:
    """ASGI middleware: the socket peer of each request, for the login brake (headers could be forged)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        token = CLIENT.set((scope.get("client") or ("?", 0))[0])
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT.reset(token)


class SessionRoutesNeedLogin:
    """ASGI middleware: Gradio serves its session heartbeat and start-up events without asking for the
    login its other routes need; with a login set, these need the session cookie too."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        gradio_app = scope.get("app")  # set by Starlette before its middleware runs
        if (scope["type"] == "http" and getattr(gradio_app, "auth", None) is not None
                and self._guarded(scope, gradio_app) and not self._logged_in(scope, gradio_app)):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"detail": "Not authenticated"}'})
            return
        await self.app(scope, receive, send)

    def _guarded(self, scope, gradio_app) -> bool:
        if "/startup-events" in scope["path"]:  # Gradio's own launch calls it once, before any login exists
            return bool(getattr(gradio_app, "startup_events_triggered", True))
        return "/heartbeat/" in scope["path"]

    @staticmethod
    def _logged_in(scope, gradio_app) -> bool:
        from http.cookies import SimpleCookie

        cookies: SimpleCookie = SimpleCookie()
        for key, value in scope.get("headers", []):
            if key.lower() == b"cookie":
                cookies.load(value.decode("latin-1"))
        names = (f"access-token-{gradio_app.cookie_id}", f"access-token-unsecure-{gradio_app.cookie_id}")
        return any(name in cookies and cookies[name].value in gradio_app.tokens for name in names)


class LoginGuard:
    """Gradio's auth check with the brakes above; `clock` is a monotonic time source in seconds."""

    def __init__(self, credentials: str, max_failures: int = 10, window_s: float = 300.0, lockout_s: float = 60.0,
                 free_failures: int = 3, account_cap_s: float = 60.0, known_s: float = 86_400.0,
                 max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.user, _, self.password = credentials.partition(":")
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.free_failures, self.account_cap_s, self.known_s = free_failures, account_cap_s, known_s
        self.max_clients, self.clock = max_clients, clock
        self.failures: dict[str, list[float]] = {}  # address -> times of its recent wrong logins
        self.locked_until: dict[str, float] = {}  # address -> end of its lockout
        self.known: dict[str, float] = {}  # address -> when the owner last logged in from it
        self.account_failures = 0  # wrong logins in a row for the one account
        self.account_open_at = 0.0  # the account takes no login before this time
        self.lock = threading.Lock()

    def refusal(self, client: str, now: float) -> str | None:
        """Why a login from `client` is refused before its password is looked at, or None."""
        if now < self.locked_until.get(client, 0.0):
            return "address locked out"
        known = now - self.known.get(client, -self.known_s) < self.known_s
        if now < self.account_open_at and not known:
            return "account resting"
        return None

    def __call__(self, user: str, password: str) -> bool:
        now, client = self.clock(), CLIENT.get()
        ok = secrets.compare_digest(f"{user}:{password}".encode(), f"{self.user}:{self.password}".encode())
        with self.lock:
            if self.refusal(client, now):
                return False  # refused attempts are not counted: the windows never grow past their caps
            if ok:
                self.account_failures, self.account_open_at = 0, 0.0
                self.failures.pop(client, None)
                self.known[client] = now
                self._bound(self.known)
                return True
            self._count_failure(client, now)
        return False

    def _count_failure(self, client: str, now: float) -> None:
        recent = [t for t in self.failures.get(client, []) if now - t < self.window_s] + [now]
        self.failures[client] = recent
        if len(recent) >= self.max_failures:
            self.locked_until[client] = now + self.lockout_s
        self.account_failures += 1
        over = self.account_failures - self.free_failures
        if over >= 0:
            self.account_open_at = now + min(self.account_cap_s, 2.0 ** over)
        self._bound(self.failures)
        self._bound(self.locked_until)

    def _bound(self, table: dict) -> None:
        """At most `max_clients` addresses remembered: the quietest half goes when it is full."""
        if len(table) <= self.max_clients:
            return
        def last(c):
            return table[c][-1] if isinstance(table[c], list) else table[c]
        for stale in sorted(table, key=last)[:len(table) // 2]:
            table.pop(stale)


__all__ = ["CLIENT", "ClientAddress", "LoginGuard", "SessionRoutesNeedLogin"]
