"""The public page's languages: one YAML catalog per language (scanner/locales/<code>.yml, and a
district's own in [serve] public_languages_dir), the visitor's choice (?lang=, else Accept-Language),
and dates and numbers in the language's form (Babel).

A catalog maps a key to the sentence a visitor reads; `{placeholders}` are filled in by the page.
English is the reference: a language missing a key shows the English sentence for it.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from pathlib import Path

import yaml
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_decimal

DEFAULT_LANGUAGE = "en"
SHIPPED = Path(__file__).parent / "locales"
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
COUNT_RANGE = re.compile(r"^([\d,]+) to ([\d,]+)$")


def _read_catalog(path: Path) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not a readable YAML catalog ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{path}: a catalog maps each key to one sentence (key: text)")
    return data


@lru_cache(maxsize=8)
def catalogs(extra_dir: str | None = None) -> dict[str, dict[str, str]]:
    """Every language's catalog: the shipped ones, then the district's (which win, key by key)."""
    found: dict[str, dict[str, str]] = {}
    for directory in [SHIPPED] + ([Path(extra_dir)] if extra_dir else []):
        for path in sorted(directory.glob("*.yml")):
            if not LANGUAGE_CODE.match(path.stem):
                raise ValueError(f"{path}: name a catalog by its language code, like es.yml or pt-BR.yml")
            try:
                Locale.parse(path.stem.replace("-", "_"))
            except (UnknownLocaleError, ValueError):
                raise ValueError(f"{path}: {path.stem!r} is not a language code Babel knows") from None
            found.setdefault(path.stem, {}).update(_read_catalog(path))
    english = found[DEFAULT_LANGUAGE]
    return {code: {**english, **strings} for code, strings in found.items()}


def choose_language(query_lang: str | None, accept_language: str | None, available) -> str:
    """The visitor's language: ?lang= when we have it, else the best of Accept-Language, else English."""
    if query_lang in available:
        return query_lang
    wanted = []
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            wanted.append((quality, tag.strip()))
    for _, tag in sorted(wanted, key=lambda item: -item[0]):
        for code in (tag, tag.split("-")[0].lower()):
            if code in available:
                return code
    return DEFAULT_LANGUAGE


def long_date(value: str | None, language: str) -> str | None:
    """2026-11-23T08:36:00Z or 2026-11-23 -> "November 23, 2026" / "23 de noviembre de 2026"."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return format_date(moment.date(), format="long", locale=language.replace("-", "_"))


def public_count(value: str | None, strings: dict[str, str], language: str) -> str:
    """A published count ("<10", "1,230 to 1,239") in the language's words and number form."""
    if value is None:
        return ""
    if value == "<10":
        return strings["fewer_than_ten"]
    match = COUNT_RANGE.match(value)
    if not match:
        return value
    low, high = (format_decimal(int(part.replace(",", "")), locale=language.replace("-", "_")) for part in match.groups())
    return strings["count_range"].format(low=low, high=high)
