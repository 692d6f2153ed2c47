"""Build the compiled outcome window, or fall back to its pure-Python twin.

The extension is what makes the hot path cheap, so a normal install
(``pip install .``) builds it. A machine without a working C compiler (or
without the Python headers) still gets a working package: the build failure is
caught, one warning says how to get the compiled window, and the package runs
on ``recovery/_window_py.py`` (``recovery.EXTENSION_ACTIVE`` is then False).
Set ``RECOVERY_NO_EXTENSIONS=1`` at build time to skip the extension on purpose.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

FALLBACK_WARNING = """
********************************************************************************
WARNING: recovery's compiled window could not be built ({error}).
recovery is installed with its pure-Python twin: it works the same, with a
slower hot path (recovery.EXTENSION_ACTIVE is False). To get the compiled one,
install a C compiler and the Python headers (Debian/Ubuntu:
`apt-get install gcc python3-dev`; macOS: `xcode-select --install`; Windows:
Microsoft C++ Build Tools) and reinstall recovery.
********************************************************************************
"""

# What a missing or broken compiler raises: spawn fails (ExecError, or OSError
# for a compiler that is not there), compilation or linking fails (CCompilerError),
# or no compiler is known for the platform (PlatformError).
BUILD_FAILURES = (CCompilerError, ExecError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into the fallback warning."""

    def run(self) -> None:
        try:
            super().run()
        except BUILD_FAILURES as error:
            self._fall_back(error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_FAILURES as error:
            # Forget the extension, so that the steps after the build (an editable
            # install copying it into the source tree, the wheel's file list) do not
            # look for a file that was never made.
            self.extensions = [other for other in self.extensions if other is not ext]
            self._fall_back(error)

    def _fall_back(self, error: BaseException) -> None:
        sys.stderr.write(FALLBACK_WARNING.format(error=error))


ext_modules = []
if os.environ.get("RECOVERY_NO_EXTENSIONS") != "1":
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [
            # _window.h (with _window_guards.h) is the extension's C half: the compiler
            # finds it beside the generated C; ``depends`` rebuilds the module when it
            # or one of the .pxi parts of _window.pyx changes.
            Extension(
                "recovery._window",
                ["recovery/_window.pyx"],
                include_dirs=["recovery"],
                depends=sorted(
                    str(part) for pattern in ("_window*.h", "_window_*.pxi")
                    for part in Path("recovery").glob(pattern)
                ),
            )
        ],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
