"""Build the compiled outcome window.

The extension is required for a normal install (``pip install .``): the whole
point of the package is its cheap hot path. Set ``RECOVERY_NO_EXTENSIONS=1`` at
build time to skip it; the package then runs on its pure-Python twin.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("RECOVERY_NO_EXTENSIONS") != "1":
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("recovery._window", ["recovery/_window.pyx"])],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )

setup(ext_modules=ext_modules)
