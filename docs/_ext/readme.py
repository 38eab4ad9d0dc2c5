"""A mkdocs hook: the site's home page is the README, so that the two never drift apart. Its
links into docs/ become links between pages, and its link to CONTRIBUTING.md (outside the
site) the developer guide, which holds the same."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files


def on_files(files: Files, config) -> Files:
    readme = Path(config["config_file_path"]).parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    text = text.replace("](docs/", "](").replace("](CONTRIBUTING.md)", "](developer.md)")
    files.append(File.generated(config, "index.md", content=text))
    return files
