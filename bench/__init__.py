"""Benchmarks of tape (not tests): python -m bench, bench.compare, bench.crossproc, ...

Importing this package binds `tape` to the installed build (the release build
of .venv-bench under `make bench`), not to the source tree that
`python -m bench...` puts first on sys.path.
"""

from bench.peers import import_installed_tape

import_installed_tape()
