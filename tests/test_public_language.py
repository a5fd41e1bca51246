"""The public page in the visitor's language: English and Spanish shipped, chosen by ?lang= (a link
on the page) or Accept-Language, dates and numbers in the language's form, every sentence from the
language catalogs (scanner/locales), and a district's own catalogs in [serve] public_languages_dir."""

import re
from html.parser import HTMLParser

import pytest
import yaml

from scanner import public_language
from scanner.config import load_config
from scanner.serve import ServeError, build_datasette
from tests.publish_fixtures import DISTRICT_NAME, build_inventory, write_config

CONTACT = "privacy@district.example"
# What the page shows from the inventory as it is: app, company and suggested-app names, and the
# condition the district wrote in its catalog ("Teacher use only": its own words, not the page's).
DATA = {"Kahoot!", "Kahoot ASA", "Quizlet", "Quizlet Inc.", "ChatGPT", "OpenAI", "Padlet", "Wallwisher", "Book Creator",
        "Tools for Schools", "MathQuest", "MathQuest LLC", "Gemini for Education", "Teacher use only", DISTRICT_NAME, CONTACT}
MARK = re.compile(r"⟦.*?⟧", re.S)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return build_inventory(tmp_path_factory.mktemp("language"))


def datasette_for(inventory, tmp_path, serve=()):
    config = load_config(write_config(tmp_path, public=True, accounts=False, contact=CONTACT, serve=list(serve)))
    return build_datasette(inventory.db_path, config)


class VisibleText(HTMLParser):
    """The text a visitor reads or hears: text nodes outside script and style, and labels in attributes."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("aria-label", "title", "alt", "placeholder") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data)


def visible_text(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.parts


async def test_accept_language_es_gives_the_spanish_page(inventory, tmp_path):
    page = await datasette_for(inventory, tmp_path).client.get("/transparency", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    assert page.status_code == 200
    assert page.headers["content-language"] == "es" and "accept-language" in page.headers["vary"].lower()
    html = page.text
    assert '<html lang="es">' in html
    for words in ("Aprobadas", "No aprobadas", "En revisión", "Acuerdo de privacidad", "Estudiantes", "Ir al contenido",
                  "Para proteger la privacidad, ningún número se muestra exacto"):
        assert words in html, words
    assert "Approved" not in html and "About this list" not in html
    # Dates in Spanish ("14 de septiembre de 2026"), ranges of ten in Spanish ("20 a 29").
    assert re.search(r"revisado por última vez el \d{1,2} de [a-z]+ de \d{4}", html)
    assert re.search(r">\d+ a \d+<", html) and ">&lt;10<" in html
    # App and company names as they are; the link back to English.
    assert "Kahoot ASA" in html and 'href="/transparency?lang=en"' in html


async def test_the_link_chooses_the_language_over_the_browser(inventory, tmp_path):
    client = datasette_for(inventory, tmp_path).client
    english = (await client.get("/transparency")).text
    assert '<html lang="en">' in english and 'href="/transparency?lang=es"' in english and ">Español<" in english
    assert "Approved" in english and re.search(r"Usage last checked on [A-Z][a-z]+ \d{1,2}, \d{4}\.", english)
    assert re.search(r">\d+ to \d+<", english)
    spanish = (await client.get("/transparency?lang=es", headers={"Accept-Language": "en-US"})).text
    assert '<html lang="es">' in spanish and "Aprobadas" in spanish
    back = (await client.get("/transparency?lang=en", headers={"Accept-Language": "es"})).text
    assert '<html lang="en">' in back and "Approved" in back
    unknown = (await client.get("/transparency?lang=xx", headers={"Accept-Language": "fr, de;q=0.5"})).text
    assert '<html lang="en">' in unknown


@pytest.mark.parametrize("language", ["en", "es"])
async def test_every_visible_string_of_the_public_page_comes_from_the_catalog(inventory, tmp_path, language):
    """Each catalog sentence is marked ⟦...⟧ in a district catalog; whatever text is left unmarked
    must be data (names), numbers or punctuation. A sentence typed into the template fails here."""
    marked = tmp_path / "marked"
    marked.mkdir()
    for code, strings in public_language.catalogs().items():
        (marked / f"{code}.yml").write_text(yaml.safe_dump(
            {key: value if key == "language_name" else f"⟦{value}⟧" for key, value in strings.items()}, allow_unicode=True),
            encoding="utf-8")
    datasette = datasette_for(inventory, tmp_path, serve=[f'public_languages_dir = "{marked}"'])
    page = await datasette.client.get(f"/transparency?lang={language}")
    assert page.status_code == 200
    names = {strings["language_name"] for strings in public_language.catalogs().values()}
    leftovers = []
    for text in visible_text(page.text):
        rest = MARK.sub(" ", text)
        for name in sorted(DATA | names, key=len, reverse=True):
            rest = rest.replace(name, " ")
        if re.sub(r"[\s\d.,·:;()<>&/-]+", "", rest):
            leftovers.append(text.strip())
    assert leftovers == [], f"text on the public page not in the {language} catalog"
    assert "⟦" in page.text


def test_a_districts_catalog_adds_a_language_and_rewords_one(tmp_path):
    folder = tmp_path / "languages"
    folder.mkdir()
    (folder / "vi.yml").write_text("language_name: Tiếng Việt\nsection_approved: Đã phê duyệt\n", encoding="utf-8")
    (folder / "en.yml").write_text("section_denied: Not allowed\n", encoding="utf-8")
    found = public_language.catalogs(str(folder))
    assert found["vi"]["section_approved"] == "Đã phê duyệt"
    assert found["vi"]["section_pending"] == "Under review"  # a missing sentence falls back to English
    assert found["en"]["section_denied"] == "Not allowed" and found["es"]["section_denied"] == "No aprobadas"
    assert public_language.choose_language(None, "vi-VN", found) == "vi"


def test_every_shipped_language_has_every_english_sentence_and_placeholder():
    shipped = {path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) for path in public_language.SHIPPED.glob("*.yml")}
    english = shipped["en"]
    for code, strings in shipped.items():
        assert set(strings) == set(english), code
        for key, value in strings.items():
            assert set(re.findall(r"{\w+}", value)) == set(re.findall(r"{\w+}", english[key])), (code, key)


@pytest.mark.parametrize("name,text,error", [
    ("xx.yml", "a: b\n", "'xx' is not a language code Babel knows"),
    ("spanish.yml", "a: b\n", "name a catalog by its language code"),
    ("es.yml", "- a list\n", "a catalog maps each key to one sentence"),
    ("es.yml", "a: [unclosed\n", "not a readable YAML catalog"),
])
async def test_a_bad_district_catalog_stops_start_up_with_its_name(inventory, tmp_path, name, text, error):
    folder = tmp_path / "languages"
    folder.mkdir()
    (folder / name).write_text(text, encoding="utf-8")
    with pytest.raises(ServeError, match=re.escape(error)) as raised:
        datasette_for(inventory, tmp_path, serve=['public_languages_dir = "languages"'])
    assert name in str(raised.value)
