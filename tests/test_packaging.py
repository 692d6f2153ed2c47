"""Packaging: a machine without a C compiler still installs a working recovery.

Builds a real wheel with pip from a copy of the source tree, with ``CC`` pointing
at a compiler that does not exist, and checks that the build succeeds with the
fallback warning and that the wheel runs on the pure-Python twin. It takes about
ten seconds (pip sets up an isolated build environment), bounded by a timeout.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import attr
import attrs

import recovery
import recovery.testing

ROOT = Path(__file__).resolve().parent.parent
PIP_TIMEOUT = 240.0


def _source_copy(destination: Path) -> Path:
    """The files a source build needs, without build outputs of the checkout."""
    source = destination / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "recovery",
        source / "recovery",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__"),
    )
    return source


BROKEN_COMPILER = {"CC": "/nonexistent/cc", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
FALLBACK_WARNING = "recovery's compiled window could not be built"


def _pip(*args: str) -> str:
    """Run pip with a compiler that does not exist; its verbose output."""
    env = {**os.environ, **BROKEN_COMPILER}
    env.pop("RECOVERY_NO_EXTENSIONS", None)
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "-v", "--no-deps"],
        capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert output.count(FALLBACK_WARNING) == 1, output[-4000:]
    assert "install a C compiler and the Python headers" in output
    return output


def _run_alone(tmp_path: Path, site_dir: Path) -> tuple[str, str, str]:
    """Import recovery from ``site_dir`` only: where from, EXTENSION_ACTIVE, a call's value.

    ``-S`` keeps out this environment's site-packages and .pth files (the checkout's
    editable install would serve its own compiled window); ``site_dir`` is added as a
    site directory (so its .pth files count) and attrs is copied in beside it.
    """
    deps = tmp_path / "deps"
    for package in (Path(attr.__file__).parent, Path(attrs.__file__).parent):
        shutil.copytree(package, deps / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        f"import site; site.addsitedir({str(site_dir)!r}); import recovery; "
        "print(recovery.__file__, recovery.EXTENSION_ACTIVE, "
        "recovery.CircuitBreaker('db').call(int, '1'))"
    )
    ran = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={**os.environ, "PYTHONPATH": str(deps)},
    )
    assert ran.returncode == 0, ran.stderr
    where, active, value = ran.stdout.split()
    return where, active, value


def test_a_wheel_built_without_a_compiler_runs_on_the_twin(tmp_path: Path) -> None:
    source = _source_copy(tmp_path)
    wheels = tmp_path / "wheels"
    _pip("wheel", "-w", str(wheels), str(source))

    (wheel,) = wheels.glob("recovery-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "recovery/_window_py.py" in names
    subpackages = sorted(str(init.relative_to(source)) for init in
                         (source / "recovery").rglob("__init__.py"))
    assert [init for init in subpackages if init not in names] == []  # every package ships
    assert [name for name in names if name.endswith(".dist-info/licenses/LICENSE")], names
    assert not [name for name in names if name.startswith("recovery/_window.")
                and name.endswith((".so", ".pyd"))], names

    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    where, active, value = _run_alone(tmp_path, unpacked)
    assert where.startswith(str(unpacked)), where
    assert (active, value) == ("False", "1")


def test_an_editable_install_without_a_compiler_runs_on_the_twin(tmp_path: Path) -> None:
    """The README's install command: after the failed compile, the editable install must
    not look for the extension it did not build."""
    source = _source_copy(tmp_path)
    target = tmp_path / "site"
    _pip("install", "--target", str(target), "-e", str(source),
         "--config-settings", "editable_mode=compat")
    where, active, value = _run_alone(tmp_path, target)
    assert where.startswith(str(source)), where
    assert (active, value) == ("False", "1")


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "recovery", *args],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return done.stdout


def test_version_comes_from_the_package_metadata() -> None:
    assert recovery.__version__ == importlib.metadata.version("recovery")
    hot_path = "compiled" if recovery.EXTENSION_ACTIVE else "pure-Python"
    assert _cli("--version") == f"recovery {recovery.__version__} ({hot_path} hot path)\n"


# reStructuredText that must not reach a terminal: ``literals``, a literal-block
# "::" at the end of a line, and roles such as :class:`Name`.
RST_MARKUP = re.compile(r"``|::\s*$|:[a-z]+:`", re.MULTILINE)


def test_cli_help_is_plain_text() -> None:
    top = _cli("--help")
    commands = re.search(r"\{([\w,-]+)\}", top)
    assert commands is not None, top
    for args in [(), *((name,) for name in commands[1].split(","))]:
        text = _cli(*args, "--help")
        assert not RST_MARKUP.search(text), f"recovery {' '.join(args)} --help:\n{text}"


def test_the_library_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("recovery").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


def test_clock_is_exported() -> None:
    assert "Clock" in recovery.__all__
    assert isinstance(recovery.testing.FakeClock(), recovery.Clock)
    assert not isinstance(object(), recovery.Clock)


COMPAT_INSTALL = 'pip install -e ".[test]" --config-settings editable_mode=compat'


def installed_as_an_import_hook() -> bool:
    """Whether recovery is installed in setuptools' default editable mode: a finder module
    that Python runs and static tools cannot follow (not a path entry, not a wheel)."""
    return any(getattr(finder, "__module__", "").startswith("__editable___recovery_")
               for finder in sys.meta_path)


def test_mypy_finds_the_installed_package(tmp_path: Path) -> None:
    """A user's script type-checks against recovery as installed (README's install mode).

    setuptools' default editable install is an import hook, which mypy cannot see
    ("Cannot find implementation or library stub"); the README installs with
    editable_mode=compat, a plain path entry that mypy follows. A contributor who
    installed the default way still gets a passing suite: the script is then checked
    against the checkout (MYPYPATH), with a warning saying how to reinstall for the
    full check. The script has one deliberate error, so a pass proves mypy read
    recovery's own types.
    """
    script = tmp_path / "user.py"
    script.write_text(
        "import recovery\n"
        "\n"
        "cb = recovery.CircuitBreaker('db')\n"
        "count: int = cb.name\n"
    )
    env = dict(os.environ)
    if installed_as_an_import_hook():
        env["MYPYPATH"] = str(ROOT)
        warnings.warn(
            "recovery is installed as setuptools' editable import hook, which mypy and "
            f"editors cannot follow; type-checked against the checkout instead. Reinstall "
            f"with: {COMPAT_INSTALL}", stacklevel=1,
        )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", script.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert "import-not-found" not in checked.stdout, (
        f"mypy cannot see the installed recovery: reinstall with {COMPAT_INSTALL}\n"
        f"{checked.stdout}"
    )
    assert checked.stdout.splitlines()[0].startswith("user.py:4: error: Incompatible types"), (
        checked.stdout
    )


def test_an_uninstalled_checkout_has_a_placeholder_version(tmp_path: Path) -> None:
    """Imported from a plain directory with no package metadata, recovery still imports."""
    # Only the packages: site-packages would bring the installed recovery's metadata.
    for package in (ROOT / "recovery", Path(attr.__file__).parent, Path(attrs.__file__).parent):
        shutil.copytree(package, tmp_path / package.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    ran = subprocess.run(
        [sys.executable, "-S", "-c",
         "import recovery; print(recovery.__file__, recovery.__version__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    where, version = ran.stdout.split()
    assert where.startswith(str(tmp_path)), where
    assert version == "0+unknown"


def test_import_recovery_does_not_import_the_commands() -> None:
    """The command modules (and what they import) load only for the command line."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys, recovery; print(sorted(m for m in sys.modules"
         " if m in ('recovery.demo', 'recovery.tune', 'recovery.__main__')))"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert done.stdout.strip() == "[]"


def test_shipped_code_does_not_import_the_testing_helpers() -> None:
    """``recovery.testing`` is for tests: the library, the commands, the demo and the
    dashboard run without it (the demo's simulated plugins live in ``recovery._flaky``)."""
    shipped = ", ".join(repr(name) for name in (
        "recovery", "recovery.__main__", "recovery.demo", "recovery.demo.fleet",
        "recovery.tune", "recovery.dashboard", "recovery.dashboard.cli", "recovery.cluster",
        "recovery.prometheus",
    ))
    done = subprocess.run(
        [sys.executable, "-c",
         f"import importlib, sys\nfor name in ({shipped}): importlib.import_module(name)\n"
         "print(sorted(m for m in sys.modules if m.startswith('recovery.testing')))"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert done.stdout.strip() == "[]"
