"""Graph's throttling, modelled on its published limits.

Identity and access requests (users, groups, service principals, grants, SKUs) draw
resource units (RU) from a budget per application and tenant over a sliding window
(a large tenant: 8,000 RU per 10 seconds); each request's cost depends on the
endpoint and its query options. The identity reports (sign-in activity) allow only
a few requests per window. A request over the limit gets 429 with a Retry-After of
the time until enough of the window has passed.
"""

from __future__ import annotations

import threading
from collections import deque

from ..clock import Clock

# Base cost in RU by endpoint kind; "any other identity GET" costs 1.
BASE_COSTS = {
    "users": 2,
    "oauth2PermissionGrants": 2,
    "appRoleAssignments": 2,
    "subscribedSkus": 3,
    "members": 3,
    "transitiveMembers": 5,
    "applications": 2,
    "write": 3,  # a create, update or delete (revocation)
}


def resource_units(kind: str, query: dict[str, str]) -> int:
    """The RU cost Graph documents: base cost, -1 with $select, +1 with $expand, -1 with $top < 20, at least 1."""
    cost = BASE_COSTS.get(kind, 1)
    if "$select" in query:
        cost -= 1
    if "$expand" in query:
        cost += 1
    top = query.get("$top", "")
    if top.isdigit() and int(top) < 20:
        cost -= 1
    return max(1, cost)


class SlidingWindow:
    """Units spent in the last `window` seconds of the clock, against a budget; thread-safe."""

    def __init__(self, budget: float, window: float, clock: Clock | None = None):
        self.budget, self.window = budget, window
        self.clock = clock or Clock()
        self._spent: deque[tuple[float, float]] = deque()
        self._total = 0.0
        self._lock = threading.Lock()

    def take(self, units: float) -> float | None:
        """Spend `units` if the budget allows and return None; otherwise return the
        seconds until it would (nothing is spent)."""
        now = self.clock.monotonic()
        with self._lock:
            while self._spent and self._spent[0][0] <= now - self.window:
                self._total -= self._spent.popleft()[1]
            if self._total + units <= self.budget:
                self._spent.append((now, units))
                self._total += units
                return None
            # Wait until the oldest spending that frees enough units leaves the window.
            needed, freed = self._total + units - self.budget, 0.0
            for at, spent in self._spent:
                freed += spent
                if freed >= needed:
                    return max(0.001, at + self.window - now)
            return self.window

    def used_fraction(self) -> float:
        with self._lock:
            return self._total / self.budget if self.budget else 0.0
