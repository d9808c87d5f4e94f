#!/usr/bin/env bash
# packaging/wheel-test.sh - check what tape ships, and that its wheel needs no compiler.
#
# Run by `make wheel-test` after `make wheel` has put a manylinux wheel in dist/:
#   1. the wheel's files: the package, its two extensions, stubs, LICENSE; no C source
#   2. an sdist built into a temp dir: csrc/ (core, headers, tests), the extensions' C
#      sources, docs/, examples/, tests/, README, LICENSE, CHANGELOG; no build output
#   3. the sdist builds a wheel with the same package files as the one of dist/
#   4. a fresh venv whose PATH holds no C compiler installs the wheel (binaries only)
#      and runs a smoke test: open a queue, write, read, `tape info`, `tape --version`
#   5. in that venv, installing the sdist fails at once with setup.py's message
# Exits non-zero at the first failed check.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
WHEEL_VENV=${WHEEL_VENV:-build/venv-wheel}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tape-wheel-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

VERSION=$("$PYTHON" -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open("tape/__init__.py").read())[1])')
WHEEL=$(ls -t dist/tape-"$VERSION"-*manylinux*.whl 2>/dev/null | head -1 || true)
[ -n "$WHEEL" ] || fail "no manylinux wheel of tape $VERSION in dist/ (run make wheel)"

# has LIST REGEX...: each regex matches a line of LIST; lacks LIST REGEX: none does.
has() { local list=$1; shift; for re in "$@"; do grep -Eq -- "$re" "$list" || fail "$(basename "$list" .txt) lacks $re"; done; }
lacks() { if grep -E -- "$2" "$1"; then fail "$(basename "$1" .txt) holds the files above ($2)"; fi; }
# A file list, summarized: the number of files per top folder (two levels under tape/).
summary() { sed -E 's#^(tape/[^/]+/|[^/]+/)[^/].*#\1#; /^[^/]*$/! s#/$#/ (files)#' "$1" | sort | uniq -c | sed 's/^/   /'; }

step "1. wheel: $WHEEL"
unzip -Z1 "$WHEEL" | grep -v "/$" | sort > "$TMP/wheel.txt"
has "$TMP/wheel.txt" '^tape/__init__\.py$' '^tape/cli\.py$' '^tape/codecs/__init__\.py$' \
    '^tape/_native/__init__\.py$' '^tape/py\.typed$' '^tape/_core\.pyi$' '^tape/_msgpack\.pyi$' \
    '^tape/_core\.[^/]*\.so$' '^tape/_msgpack\.cpython-[^/]*\.so$' \
    '^tape/_native/_hot\.cpython-[^/]*\.so$' '^tape/_native/_hot\.pyi$' \
    "^tape-$VERSION\.dist-info/licenses/LICENSE$" "^tape-$VERSION\.dist-info/entry_points\.txt$"
lacks "$TMP/wheel.txt" '\.(c|h|o)$|^csrc/|^tests/|^docs/|^examples/'
unzip -p "$WHEEL" "tape-$VERSION.dist-info/METADATA" > "$TMP/METADATA"
grep -q '^License-Expression: MIT$' "$TMP/METADATA" || fail "METADATA has no License-Expression: MIT"
grep -q '^Classifier: Operating System :: POSIX :: Linux$' "$TMP/METADATA" || fail "METADATA has no Linux classifier"
echo "   $(wc -l < "$TMP/wheel.txt") files; no .c/.h; extensions and LICENSE present:"
grep -E '\.so$|LICENSE|WHEEL$' "$TMP/wheel.txt" | sed 's/^/     /'
summary "$TMP/wheel.txt"
echo "   tag: $(unzip -p "$WHEEL" "tape-$VERSION.dist-info/WHEEL" | grep '^Tag:' | tr '\n' ' ')"

step "2. sdist (built into $TMP/sdist)"
env -u TAPE_TESTING "$WHEEL_VENV/bin/python" -m build --sdist --outdir "$TMP/sdist" . > "$TMP/sdist.log" 2>&1 \
    || { cat "$TMP/sdist.log"; fail "the sdist did not build"; }
SDIST=$(ls "$TMP"/sdist/tape-*.tar.gz)
tar tzf "$SDIST" | sed "s#^tape-$VERSION/##" | grep -v '/$' | grep . | sort > "$TMP/sdist.txt"
# Every tracked file of the core, its tests, the extensions, the documents and examples.
needed=$(git ls-files csrc docs examples tests 'tape/*.c' 'tape/*.h' | grep -v '^csrc/tests/fuzz/corpus/' || true)
for f in $needed README.md LICENSE CHANGELOG.md setup.py pyproject.toml MANIFEST.in PKG-INFO; do
    grep -qxF "$f" "$TMP/sdist.txt" || fail "sdist lacks $f"
done
has "$TMP/sdist.txt" '^csrc/tests/fuzz/corpus/seed-0$'
lacks "$TMP/sdist.txt" '\.(so|o|pyc)$|^tape/_core\.c$|^build/|^\.venv|__pycache__'
echo "   $(wc -l < "$TMP/sdist.txt") files, every tracked file of csrc/ docs/ examples/ tests/ and tape/*.c, *.h among them:"
summary "$TMP/sdist.txt"

step "3. a wheel built from the sdist holds the same package files"
env -u TAPE_TESTING "$WHEEL_VENV/bin/python" -m pip wheel -q --no-deps -w "$TMP/from-sdist" "$SDIST" \
    > "$TMP/from-sdist.log" 2>&1 || { cat "$TMP/from-sdist.log"; fail "the sdist did not build a wheel"; }
unzip -Z1 "$TMP"/from-sdist/tape-*.whl | grep "^tape/.*[^/]$" | sort > "$TMP/from-sdist.txt"
grep '^tape/' "$TMP/wheel.txt" | diff - "$TMP/from-sdist.txt" || fail "the sdist's wheel differs (above)"
echo "   same $(wc -l < "$TMP/from-sdist.txt") files under tape/"

step "4. the wheel in a fresh venv with no compiler on PATH"
"$PYTHON" -m venv "$TMP/venv"
BARE="$TMP/venv/bin"   # the venv's bin only: no gcc, cc, clang, make, ld
PATH="$BARE" "$BARE/python" -c '
import shutil, sys
found = [c for c in ("gcc", "cc", "clang", "c99", "ld", "make") if shutil.which(c)]
sys.exit("a compiler is on PATH: %s" % found if found else 0)'
echo "   PATH=$BARE: no gcc, cc, clang, c99, ld, make"
PATH="$BARE" "$BARE/python" -m pip install --only-binary :all: "$ROOT/$WHEEL" > "$TMP/install.log" 2>&1 \
    || { cat "$TMP/install.log"; fail "the wheel did not install without a compiler"; }
echo "   $(grep '^Successfully installed' "$TMP/install.log") (binary wheels only)"
mkdir "$TMP/run"
cd "$TMP/run"   # away from the source tree: `import tape` must find the installed one
PATH="$BARE" "$BARE/python" - "$TMP/run/q" <<'EOF'
import sys

import tape
import tape._core
import tape._msgpack

assert "site-packages" in tape.__file__, tape.__file__
path = sys.argv[1]
with tape.Queue(path) as q:
    a = q.appender()
    first = a.write({"id": 1, "side": "buy"})
    a.write_many({"id": k} for k in range(2, 1001))
    t = q.tailer()
    assert t.read() == {"id": 1, "side": "buy"}
    assert [v["id"] for v in t] == list(range(2, 1001))
    assert t.read() is None
    assert q.count() == 1000 and q.verify().ok
print(f"   tape {tape.__version__} from {tape.__file__}")
print(f"   wrote 1000 entries (first index {first:#x}), read them back, verify ok")
EOF
echo "   \$ tape --version"
PATH="$BARE" tape --version | sed 's/^/   /'
echo "   \$ tape info q"
PATH="$BARE" tape info q | sed 's/^/   /'
cd "$ROOT"

step "5. installing the sdist without a compiler fails with setup.py's message"
if PATH="$BARE" "$BARE/python" -m pip install --no-deps --no-binary tape --force-reinstall "$SDIST" \
        > "$TMP/nocc.log" 2>&1; then
    fail "the sdist installed without a compiler?"
fi
grep -q 'Debian/Ubuntu: *sudo apt-get install build-essential python3-dev' "$TMP/nocc.log" \
    || { cat "$TMP/nocc.log"; fail "pip's output lacks setup.py's message"; }
echo "   pip's output ($(wc -l < "$TMP/nocc.log") lines):"
sed 's/^/   | /' "$TMP/nocc.log"

echo
echo "wheel-test: all checks passed ($WHEEL)"
