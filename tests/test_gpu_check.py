"""The GPU check's dry run: benchmarks/gpu_check.sh on the CPU at small sizes.

The check runs on a GPU machine only when one is lent, for minutes; this dry
run makes sure that, when that happens, every section runs and gives numbers.
It installs nothing (``--no-install``) and does not run the test suite from
inside the suite (the dry run only counts the CUDA tests).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
SECTIONS = ["tests", "entropy", "overhead", "pickle", "bfloat16"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and timeout (coreutils)")
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--small", "--no-install"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = out / "gpu_report.md"
    assert report.exists(), done.stdout + done.stderr
    return done, report.read_text()


def _figures(text):
    block = re.search(r"## Figures \(JSON\)\s+```json\n(.*?)\n```", text, re.S)
    assert block, text
    return json.loads(block.group(1))


def test_dry_run_succeeds_and_prints_the_report(dry_run):
    done, text = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "## Summary" in done.stdout  # the report is printed at the end


def test_report_starts_with_versions_and_card(dry_run):
    _, text = dry_run
    setup = text.split("## Summary")[0]
    for name in ["python", "torch", "CUDA", "numba", "scikit-learn", "card:"]:
        assert name in setup, setup
    assert "install: skipped (--no-install)" in setup


@pytest.mark.parametrize("key", SECTIONS)
def test_every_section_holds_numbers(dry_run, key):
    _, text = dry_run
    section = _figures(text)[key]
    assert section["status"] == "ok", section
    numbers = [v for v in section.values() if isinstance(v, (int, float))]
    assert len(numbers) >= 2, section  # a figure, and the section's seconds


def test_summary_table_has_ratios_with_goals(dry_run):
    _, text = dry_run
    summary = text.split("## Summary")[1].split("\n## ")[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    ratios = [r for r in rows if re.search(r"\| [\d.]+x \| <= [\d.]+x \|", r)]
    assert len(ratios) == 6, summary  # 2 entropy, 4 inside the forward pass
    assert "pickled" in summary and "bfloat16" in summary


def test_figures_are_sane(dry_run):
    _, text = dry_run
    figures = _figures(text)
    assert figures["entropy"]["entropy_abs_difference"] < 1e-6
    ratios = figures["overhead"]["ratios"]
    assert all(0 < r < 100 for r in ratios.values()), ratios
    assert figures["pickle"]["equal_within_tolerance"] is True
    assert figures["pickle"]["cpu_process_saw_cuda"] is False
    assert 0 <= figures["bfloat16"]["P_entries_differing"] <= 1
    assert figures["tests"]["ran"] is False  # no recursion into the suite
    assert figures["tests"]["selected"] > 0
