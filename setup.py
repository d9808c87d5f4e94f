"""Builds the C core through cffi; the metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["tape/_build.py:ffibuilder"])
