"""Review in the browser: the review queue and the decision form for IT, the request page for
staff (docs/review.md).

    web/    the Datasette side: /-/review (the queue, IT only), /-/review/decide?product=ID
            (the evidence and the decision form), /-/requests (a staff member's own apps and
            requests, and the form to ask for a review)

Decisions and requests are written by the core (scanner.decide, scanner.request_review),
through the same path as `catalog import`; this plugin only shows and asks.
"""

from __future__ import annotations

from scanner import hookimpl


@hookimpl
def datasette_plugins(register):
    """The review queue, the decision form and the request page for `app-inventory serve`."""
    from . import web  # imports Datasette: only when serving

    register(web, "app-inventory-review")
