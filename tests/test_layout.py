"""The layering of docs/design.md: the core stands alone and stays light to import."""

import ast
import subprocess
import sys
from pathlib import Path

import sgdinfluence

PACKAGE = Path(sgdinfluence.__file__).parent


def test_import_loads_no_plotting_table_or_image_library():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, sgdinfluence; print(sorted(m for m in "
         "('matplotlib', 'pandas', 'PIL', 'sklearn') if m in sys.modules))"],
        capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_the_core_imports_nothing_from_the_application():
    for path in (PACKAGE / "core").rglob("*.py"):
        package = ["sgdinfluence", *path.relative_to(PACKAGE).parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):  # resolve relative imports
                base = package[:len(package) - node.level + 1] if node.level else []
                names = [".".join([*base, node.module or ""]).strip(".")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("sgdinfluence.app", "pandas", "matplotlib", "PIL",
                                            "sklearn")), (path, name)
