"""The README's Python examples run: each ```python block of README.md, as a script of its
own in a fresh temporary directory, its /data/... paths moved there (issue 21, item 13).

A block may use `tape` without importing it; a block that needs what only its reader
has is skipped, saying why."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

# What a block needs that it does not define, by a text it holds.
PRELUDES = {
    "log.info": "import logging\nlog = logging.getLogger('readme')\n",
    # the replication example talks to a nats-server on its default port: one the tests start
    "nats://127.0.0.1:4222": (
        "import atexit, pathlib, sys\n"
        f"sys.path.insert(0, {str(README.parent / 'tests')!r})\n"
        "from nats_support import NatsServer\n"
        "_server = NatsServer(pathlib.Path('nats'))\n"
        "_server.port = 4222\n"
        "atexit.register(_server.stop)\n"
        "_server.start()\n"
    ),
}
# Why a block cannot run here, by a text it holds.
SKIPS = {
    "def test_": "test functions for pytest, with a Billing class and golden files of the reader's own",
    "async with": "top-level await, waiting for entries another process writes (aread() with no timeout)",
}


def blocks() -> list[tuple[int, str]]:
    """(line number, code) of each ```python block of the README."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m[1]) for m in BLOCK.finditer(text)]


def test_the_readme_has_python_examples() -> None:
    assert len(blocks()) >= 4


@pytest.mark.parametrize(("line", "code"), blocks(), ids=[f"line {n}" for n, _ in blocks()])
def test_a_readme_python_block_runs(line: int, code: str, tmp_path: Path) -> None:
    for text, why in SKIPS.items():
        if text in code:
            pytest.skip(f"README.md line {line}: {why}")
    prelude = "import tape\n" + "".join(p for text, p in PRELUDES.items() if text in code)
    script = tmp_path / "example.py"
    script.write_text(prelude + code.replace('"/data/', f'"{tmp_path}/data/'))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"README.md line {line}:\n{done.stderr}"
