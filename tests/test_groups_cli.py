"""The command line of consumer groups: tape groups, pending, dead, redrive; tape info mentions groups."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import tape
from tape.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def make(qpath: Path) -> list[int]:
    with tape.Queue(qpath) as q:
        a = q.appender()
        idx = [a.write({"job": i}) for i in range(4)]
        g = q.group("mailer")
        c = g.consumer("w1")
        m = c.claim()
        assert m is not None
        m.reject("bad input")
        assert c.claim() is not None  # held, then given back when closed
        q.group("other").close()
    return idx


def test_groups_lists_each_group(qpath: Path) -> None:
    make(qpath)
    code, out, _ = run("groups", str(qpath), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"] for r in rows] == ["mailer", "other"]
    assert rows[0]["dead_letters"] == 1 and rows[0]["lag"] == 2
    code, out, _ = run("groups", str(qpath))
    assert code == 0 and out.splitlines()[0].split()[0] == "group" and "mailer" in out


def test_dead_then_redrive(qpath: Path) -> None:
    idx = make(qpath)
    code, out, _ = run("dead", str(qpath), "mailer")
    assert code == 0
    [rec] = [json.loads(line) for line in out.splitlines()]
    assert (rec["index"], rec["value"], rec["reason"], rec["consumer"], rec["attempts"]) == (
        idx[0], {"job": 0}, "bad input", "w1", 1)
    code, out, _ = run("redrive", str(qpath), "mailer")
    assert code == 0 and out.startswith("1 ")
    assert run("dead", str(qpath), "mailer")[1] == ""
    with tape.Queue(qpath) as q:
        m = q.group("mailer").consumer().claim()
        assert m is not None and m.index == idx[0]


def test_pending_shows_held_entries(qpath: Path) -> None:
    idx = make(qpath)
    with tape.Queue(qpath) as q:
        c = q.group("mailer").consumer("w2")
        m = c.claim()
        assert m is not None
        code, out, _ = run("pending", str(qpath), "mailer")
        assert code == 0
        [rec] = [json.loads(line) for line in out.splitlines()]
        assert (rec["index"], rec["consumer"]) == (idx[1], "w2")


def test_missing_group_is_a_problem(qpath: Path) -> None:
    make(qpath)
    code, _, err = run("dead", str(qpath), "nope")
    assert code == 1 and "no consumer group 'nope'" in err
    assert run("pending", str(tmp := qpath.parent / "missing"), "g")[0] == 1
    assert not tmp.exists()


def test_info_mentions_groups(qpath: Path) -> None:
    make(qpath)
    code, out, _ = run("info", str(qpath))
    assert code == 0 and "consumer groups  2: mailer, other" in out
    code, out, _ = run("info", str(qpath), "--json")
    assert json.loads(out)["groups"] == ["mailer", "other"]


def test_verify_and_purge_ignore_the_groups_folder(qpath: Path) -> None:
    make(qpath)
    assert run("verify", str(qpath))[0] == 0
    assert run("purge", str(qpath), "--keep-cycles", "0", "--dry-run")[0] == 0


def test_redrive_of_an_index_that_is_not_a_dead_letter_says_so(qpath: Path) -> None:
    idx = make(qpath)
    code, out, err = run("redrive", str(qpath), "mailer", "--index", str(idx[0]), "--index", str(idx[3]))
    assert code == 1
    assert out.startswith("1 dead letters handed out again")  # the one that was dead
    assert f"not a dead letter of mailer: {idx[3]}" in err
