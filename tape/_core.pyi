# The compiled C core (built by tape/_build.py); cffi objects are untyped.
from typing import Any

ffi: Any
lib: Any
