"""Suggestions for apps the catalog does not list by client id: a catalog entry with a
similar name, or another provider's app of the same product.

A suggestion helps IT add the right client id to the catalog; it never approves or
merges anything (the app stays `unreviewed`, and its own product, until the catalog
lists its id).
"""

from __future__ import annotations

import difflib
import re
from urllib.parse import urlsplit

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


# Hosts where many unrelated apps live side by side: sharing one says nothing about the product.
_SHARED_HOSTS = ("azurewebsites.net", "github.io", "herokuapp.com", "appspot.com", "web.app", "firebaseapp.com",
                 "netlify.app", "vercel.app", "google.com", "microsoft.com", "googleusercontent.com")
# What two apps of different providers may share, the strongest sign first, with its score.
PRODUCT_SIGNS = (("name", 1.0), ("homepage domain", 0.9), ("publisher", 0.7))


def homepage_domain(homepage: str) -> str:
    """The host of an app's homepage without "www." ("" when there is none, or it is a shared host)."""
    host = (urlsplit(homepage).hostname or "") if homepage else ""
    host = host.removeprefix("www.")
    if not host or any(host == shared or host.endswith("." + shared) for shared in _SHARED_HOSTS):
        return ""
    return host


def product_signs(name: str, publisher: str, homepage: str) -> dict[str, str]:
    """What an app may share with another provider's client of the same product (empty values left out)."""
    signs = {"name": normalized_name(name or ""), "homepage domain": homepage_domain(homepage or ""),
             "publisher": normalized_name(publisher or "")}
    return {sign: value for sign, value in signs.items() if value}


def same_product_candidates(apps: list[dict]) -> list[dict]:
    """For each app no catalog entry names, the apps of *other* providers that look like the
    same product (same name, homepage domain or publisher): one suggestion per pair, with the
    strongest sign. `apps` rows need id, provider, name, publisher, homepage, catalog_id.
    Only suggestions: nothing is merged until IT adds the client id to a catalog entry."""
    index: dict[tuple[str, str], list[dict]] = {}
    for app in apps:
        for sign, value in product_signs(app["name"], app["publisher"], app["homepage"]).items():
            index.setdefault((sign, value), []).append(app)
    suggestions = []
    for app in apps:
        if app["catalog_id"] is not None:
            continue
        signs, seen = product_signs(app["name"], app["publisher"], app["homepage"]), set()
        for sign, score in PRODUCT_SIGNS:
            for other in index.get((sign, signs[sign]), ()) if sign in signs else ():
                if other["provider"] == app["provider"] or other["id"] in seen:
                    continue
                seen.add(other["id"])
                suggestions.append({
                    "app_id": app["id"], "catalog_id": other["catalog_id"], "same_as_app_id": other["id"],
                    "reason": f"same {sign} as the {other['provider']} app {other['name']}", "score": score,
                })
    return suggestions
