"""The versions sknap promises are the versions CI tests.

``.ci/min-versions.txt`` pins the floors of ``pyproject.toml`` for the second
environment of ``.ci/run``. Here: every pin equals its floor, every floor of
the library and its extras (not of the test and docs tools) is pinned, and,
in that environment (``SKNAP_MIN_VERSIONS=1``), the pins are what is
installed.
"""

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_EXTRAS = ("vision", "plot", "data", "skorch", "tensorboard", "lightning")


def _pins():
    pins = {}
    for line in (ROOT / ".ci" / "min-versions.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _floors():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in LIBRARY_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    floors = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement)
        assert match, f"{requirement!r}: a floor is written 'name>=version'"
        floors[match.group(1).lower()] = match.group(2)
    return floors


def _same(a, b):
    pad = lambda v: [int(p) for p in v.split(".")] + [0] * 3  # noqa: E731
    return pad(a)[:3] == pad(b)[:3]


def test_every_floor_is_pinned_at_its_version():
    pins, floors = _pins(), _floors()
    assert set(pins) == set(floors), (
        "pyproject.toml's floors and .ci/min-versions.txt name different "
        f"packages: {sorted(set(pins) ^ set(floors))}"
    )
    differ = {n: (floors[n], pins[n]) for n in floors if not _same(floors[n], pins[n])}
    assert not differ, f"floor and pin differ (floor, pin): {differ}"


@pytest.mark.skipif(
    os.environ.get("SKNAP_MIN_VERSIONS") != "1",
    reason="only in .ci/run's environment of minimum versions",
)
def test_the_minimum_versions_are_installed():
    installed = {name: metadata.version(name) for name in _pins()}
    differ = {n: (v, installed[n]) for n, v in _pins().items() if installed[n] != v}
    assert not differ, f"pinned and installed differ (pin, installed): {differ}"
