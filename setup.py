"""Builds the C core through cffi, the msgpack codec's fast path and the hot calls (tape._native._hot); the metadata lives in pyproject.toml."""

import os
import shlex
import shutil
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# A test build (TAPE_TESTING=1, what `make venv` makes) turns warnings into
# errors; a release build does not, so that a newer compiler or Python header
# with a new warning cannot stop an install.
_WARNINGS = ["-Wall", "-Wextra"] + (["-Werror"] if os.environ.get("TAPE_TESTING") == "1" else [])

# The commands that compile; metadata and sdist commands (egg_info, dist_info,
# sdist) need no compiler and are left alone.
_BUILDING = {"build", "build_ext", "bdist_wheel", "bdist_egg", "editable_wheel", "develop", "install"}

_NO_COMPILER = """\
error: tape has C code to compile and {what}.
  Install a C compiler and the Python headers, then retry:
    Debian/Ubuntu:  sudo apt-get install build-essential python3-dev
    Fedora/RHEL:    sudo dnf install gcc python3-devel
    Alpine:         sudo apk add build-base python3-dev
  Or install a wheel built where they are (`make wheel`, see README.md)."""


def _compiler_words(cmd: str) -> list[str]:
    """The programs of a compiler command as distutils reads it (`gcc -pthread`,
    `ccache gcc`): the first word, and the next one after a launcher."""
    words = [w for w in shlex.split(cmd) if not w.startswith("-")]
    if len(words) > 1 and os.path.basename(words[0]) in ("ccache", "sccache", "distcc"):
        return words[:2]
    return words[:1]


def _missing_toolchain() -> str | None:
    """What is missing to build the extensions, found the way setuptools finds
    it (the CC environment variable, else the CC Python was built with), or
    None when a compiler and Python.h are there."""
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    for prog in _compiler_words(cc):
        if shutil.which(prog) is None:
            return f"the C compiler `{prog}` (CC={cc!r}) is not on PATH"
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"the Python headers are missing (no Python.h in {include})"
    return None


def _require_toolchain() -> None:
    if not sys.platform.startswith("linux"):
        raise SystemExit(f"error: tape runs on Linux only (futexes, OFD locks), not on {sys.platform}.")
    missing = _missing_toolchain()
    if missing is not None:
        raise SystemExit(_NO_COMPILER.format(what=missing))


class _BuildExt(build_ext):  # the last check, whatever command reached the compiler
    def run(self) -> None:
        _require_toolchain()
        super().run()


# Fail before setuptools starts (and prints pages about copying files) when a build
# command is asked for and cannot succeed.
if _BUILDING.intersection(sys.argv[1:]):
    _require_toolchain()

setup(
    cmdclass={"build_ext": _BuildExt},
    cffi_modules=["tape/_build.py:ffibuilder"],
    ext_modules=[
        Extension(
            "tape._msgpack",
            sources=["tape/_msgpack.c", "tape/_msgpack_keys.c"],
            depends=["tape/_msgpack_keys.h"],
            extra_compile_args=["-std=c11", "-O2", *_WARNINGS],
        ),
        # The hot calls of Appender and Tailer: it calls the core through the
        # addresses tape._core gives it (csrc/ only for tape.h), msgpack
        # through tape._msgpack's capsule; it links no copy of either.
        Extension(
            "tape._native._hot",
            sources=[
                "tape/_native/_hot.c",
                "tape/_native/_hot_writer.c",
                "tape/_native/_hot_reader.c",
                "tape/_native/_hot_batches.c",
                "tape/_native/_hot_keys.c",
                "tape/_native/_hot_group.c",
                "tape/_native/_hot_columns.c",
            ],
            include_dirs=["csrc"],
            depends=["tape/_native/_hot.h", "tape/_msgpack.h", "csrc/tape.h"],
            extra_compile_args=["-std=c11", "-O2", *_WARNINGS],
        ),
    ],
)
