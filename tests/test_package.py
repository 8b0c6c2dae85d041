"""The package's two parts: the library, and the paper's tooling above it."""

import ast
import subprocess
import sys
from pathlib import Path

import sknap

ROOT = Path(sknap.__file__).parent


def _imports(path):
    """Absolute names of the sknap modules a file imports."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "sknap" or n.startswith("sknap.")}


def test_the_library_never_imports_the_paper_tooling():
    for path in ROOT.glob("*.py"):
        if path.name == "__main__.py":  # the command's entry point
            continue
        wrong = {n for n in _imports(path) if n.startswith("sknap.paper")}
        assert not wrong, f"{path.name} imports {sorted(wrong)}"


def test_import_sknap_does_not_load_the_paper_tooling():
    code = (
        "import sys, sknap; "
        "print(any(m.startswith('sknap.paper') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_python_dash_m_sknap_runs_the_command():
    out = subprocess.run(
        [sys.executable, "-m", "sknap", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "reproduce" in out.stdout and "demo" in out.stdout
