"""Builds the C core through cffi, and the msgpack codec's fast path; the metadata lives in pyproject.toml."""

import os

from setuptools import Extension, setup

# A test build (TAPE_TESTING=1, what `make venv` makes) turns warnings into
# errors; a release build does not, so that a newer compiler or Python header
# with a new warning cannot stop an install.
_WARNINGS = ["-Wall", "-Wextra"] + (["-Werror"] if os.environ.get("TAPE_TESTING") == "1" else [])

setup(
    cffi_modules=["tape/_build.py:ffibuilder"],
    ext_modules=[
        Extension(
            "tape._msgpack",
            sources=["tape/_msgpack.c", "tape/_msgpack_keys.c"],
            depends=["tape/_msgpack_keys.h"],
            extra_compile_args=["-std=c11", "-O2", *_WARNINGS],
        )
    ],
)
