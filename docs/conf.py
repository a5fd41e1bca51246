"""Sphinx configuration: Markdown pages (MyST) with the Furo theme.

Build:  sphinx-build -W -b html docs docs/_build/html   (tests/test_docs.py does, with -W)
"""

project = "District App Inventory"
author = "District App Inventory contributors"
copyright = "District App Inventory contributors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Headings get anchors, so pages can link to a section: [text](google.md#last-used).
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = "District App Inventory"
html_static_path = []
