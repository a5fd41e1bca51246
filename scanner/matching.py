"""Name-similarity suggestions for apps the catalog does not list by client id.

A suggestion helps IT add the right client id to the catalog; it never approves
anything (the app stays `unreviewed` until the catalog lists its id).
"""

from __future__ import annotations

import difflib
import re

SUGGESTION_CUTOFF = 0.8
CONTAINED_SCORE = 0.9
# Words that say nothing about which product an app is.
_NOISE = {"app", "apps", "for", "the", "inc", "llc", "ltd", "edu", "education", "schools", "school", "classroom", "google", "microsoft", "add", "on", "addon"}


def normalized_name(name: str) -> str:
    words = re.findall(r"[a-z0-9]+", name.lower())
    kept = [w for w in words if w not in _NOISE]
    return " ".join(kept or words)


def suggest_catalog_entry(app_name: str, catalog_names: dict[str, str]) -> tuple[str, float] | None:
    """Best catalog id for an app name, with a 0..1 score, or None if nothing is close."""
    target = normalized_name(app_name)
    if not target:
        return None
    best: tuple[str, float] | None = None
    for catalog_id, name in catalog_names.items():
        candidate = normalized_name(name)
        if not candidate:
            continue
        if candidate == target:
            score = 1.0
        else:
            score = difflib.SequenceMatcher(None, target, candidate).ratio()
            # "Grammarly for Chrome" names the product "Grammarly": every word of one is in the other.
            words, candidate_words = set(target.split()), set(candidate.split())
            if words <= candidate_words or candidate_words <= words:
                score = max(score, CONTAINED_SCORE)
        if score >= SUGGESTION_CUTOFF and (best is None or score > best[1]):
            best = (catalog_id, round(score, 3))
    return best
