"""Build the Cython core. The extensions are optional: if they cannot be compiled,
the package installs anyway and smpfast._core falls back to the pure-Python twins."""

import os

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - Cython is a build requirement
    cythonize = None


def extensions() -> list:
    if cythonize is None:
        return []
    modules = [
        Extension("smpfast._core.framing", ["smpfast/_core/framing.pyx"], optional=True),
        Extension(
            "smpfast._core.sodium",
            ["smpfast/_core/sodium.pyx"],
            libraries=["dl"],
            optional=True,
        ),
    ]
    modules = [m for m in modules if os.path.exists(m.sources[0])]
    if not modules:
        return []
    return cythonize(
        modules,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )


setup(ext_modules=extensions())
