"""The documentation site: its settings tables come from the attrs fields, and it builds.

``docs/hooks/settings_tables.py`` replaces a ``<!-- settings: module.Class -->`` marker
with a table of the class's fields, defaults and meanings, so a changed default or a new
field shows on the site without anyone editing a page, and a field its docstring does
not describe stops the build.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import attrs
import pytest

import recovery

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = [recovery.CircuitBreakerConfig, recovery.RecoveryConfig,
              recovery.HealthCheckConfig, recovery.AlertThresholds]


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "settings_tables", ROOT / "docs" / "hooks" / "settings_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls", DOCUMENTED, ids=lambda cls: cls.__name__)
def test_every_field_has_a_row_with_its_current_default(cls: type) -> None:
    table = _hook().settings_table(f"recovery.{cls.__name__}")
    rows = table.splitlines()[2:]
    assert [re.match(r"\| `(\w+)` \|", row)[1] for row in rows] == [  # type: ignore[index]
        field.name for field in attrs.fields(cls)]
    assert all(row.count(" | ") >= 2 and not row.endswith("|  |") for row in rows)


def test_a_table_shows_defaults_as_a_reader_writes_them() -> None:
    table = _hook().settings_table("recovery.CircuitBreakerConfig")
    assert "| `record_exceptions` | `(Exception,)` |" in table
    assert "| `failure_rate_threshold` | `0.5` |" in table
    table = _hook().settings_table("recovery.RecoveryConfig")
    assert "| `default_circuit_breaker` | `CircuitBreakerConfig()` |" in table
    assert "| `plugin_recovery_strategies` | `{}` |" in table


def test_an_undocumented_field_stops_the_build() -> None:
    hook = _hook()

    @attrs.frozen
    class Settings:
        """Two settings.

        - ``documented``: says what it does.
        """

        documented: int = 1
        forgotten: int = 2

    module = ModuleType("docs_example_settings")
    module.Settings = Settings  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        with pytest.raises(hook.SettingsTableError, match=r"undocumented \['forgotten'\]"):
            hook.settings_table("docs_example_settings.Settings")
    finally:
        del sys.modules[module.__name__]


def test_the_marker_is_replaced_on_a_page() -> None:
    page = "Before.\n\n<!-- settings: recovery.AlertThresholds -->\n\nAfter.\n"
    built = _hook().on_page_markdown(page)
    assert "| `consecutive_failures` | `5` |" in built
    assert "<!--" not in built


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """What CI runs (.ci/run); skipped unless the docs extra is installed."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip('the docs extra is not installed (pip install -e ".[docs]")')
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "breaker" / "index.html").is_file()
