"""The docs (docs/) and the README: they build without a warning, their generated parts
match the code, every hook is documented with its signature, the plugin example works,
and the README stays short and links only to what exists."""

import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

from scanner import hookspecs, store
from scanner.config import load_config
from scanner.plugin_manager import pm
from scanner.scan import run_scans

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def test_the_docs_build_without_a_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stdout}\n{result.stderr}"
    reference = (tmp_path / "html" / "cli-reference.html").read_text(encoding="utf-8")
    assert "app-inventory scan" in reference and "--provider" in reference  # the generated part made it in
    assert (tmp_path / "html" / "_images" / "dashboard.png").exists()


def test_the_generated_parts_of_the_docs_are_up_to_date():
    pages = sorted(str(page.relative_to(ROOT)) for page in DOCS.glob("*.md"))
    generated = [page for page in pages if "[[[cog" in (ROOT / page).read_text(encoding="utf-8")]
    assert {"docs/cli-reference.md", "docs/configuration.md", "docs/tables.md", "docs/plugins.md"} <= set(generated)
    result = subprocess.run([sys.executable, "-m", "cogapp", "--check", *pages], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, (
        f"the docs are out of date with the code: run `cog -r docs/*.md` and commit the result\n{result.stdout}{result.stderr}"
    )


def test_every_hook_is_documented_with_its_signature():
    page = (DOCS / "plugins.md").read_text(encoding="utf-8")
    hooks = [obj for obj in vars(hookspecs).values() if inspect.isfunction(obj) and hasattr(obj, "app_inventory_spec")]
    assert {hook.__name__ for hook in hooks} >= {"register_config_sections", "register_providers", "register_commands", "scan_finished"}
    for hook in hooks:
        signature = f"{hook.__name__}({', '.join(inspect.signature(hook).parameters)})"
        assert f"### `{signature}`" in page, f"docs/plugins.md does not document the hook {signature}"


def test_the_provider_example_in_the_plugin_docs_scans(tmp_path):
    page = (DOCS / "plugins.md").read_text(encoding="utf-8")
    [example] = [block for block in re.findall(r"```python\n(.*?)```", page, re.DOTALL) if "class Clever(Provider)" in block]
    module = types.ModuleType("app_inventory_clever")

    # The API calls the example leaves to the reader.
    def fetch_users(settings):
        assert settings["district_id"] == "springfield"
        return [{"id": "u1", "email": "ana@students.district.org", "name": "Ana"},
                {"id": "u2", "email": "ms.rivera@district.org", "name": "Ms Rivera"}]

    def fetch_apps(user):
        return [{"client_id": "quizzy", "name": "Quizzy", "vendor": "Quizzy Inc.", "scopes": ["read:classes"]}]

    module.fetch_users, module.fetch_apps = fetch_users, fetch_apps
    exec(compile(example, "docs/plugins.md", "exec"), module.__dict__)
    config_file = tmp_path / "app-inventory.toml"
    config_file.write_text('[clever]\ndistrict_id = "springfield"\n[roles]\nstudent_domains = ["students.district.org"]\n')
    pm.register(module, name="docs-example-clever")
    try:
        result = run_scans(tmp_path / "inventory.db", load_config(config_file), show_progress=False)
    finally:
        pm.unregister(name="docs-example-clever")
    assert result.failures == []
    db = store.open_db(str(tmp_path / "inventory.db"))
    assert {(row["id"], row["role"]) for row in db["users"].rows} == {("clever:u1", "student"), ("clever:u2", "staff")}
    assert [row["id"] for row in db["apps"].rows] == ["clever:quizzy"]
    grants = {(row["user_id"], row["app_id"], row["scopes"]) for row in db["grants"].rows}
    assert grants == {("clever:u1", "clever:quizzy", '["read:classes"]'), ("clever:u2", "clever:quizzy", '["read:classes"]')}


def test_the_readme_is_short_and_links_only_to_what_exists():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    # .ci/run runs the first indented `python3 ... pytest` line: it must be there.
    assert re.search(r"^    python3 .*pytest", readme, re.MULTILINE)
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if not re.match(r"[a-z]+://", target)]
    assert "docs/images/dashboard.png" in local and "docs/images/transparency.png" in local
    missing = [target for target in local if not (ROOT / target).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
