"""Errors: every class derives from TapeError and the fitting builtin; C codes map through one table."""

from __future__ import annotations

import errno

import pytest

import tape
from tape._core import lib
from tape._native import check

TABLE = {
    "TAPE_ECORRUPT": tape.CorruptionError,
    "TAPE_EVERSION": tape.IncompatibleQueueError,
    "TAPE_ENOTQUEUE": tape.NotAQueueError,
    "TAPE_EINCOMPAT": tape.IncompatibleQueueError,
    "TAPE_EREADONLY": tape.ReadOnlyError,
    "TAPE_ETOOBIG": tape.EntryTooLargeError,
    "TAPE_ECYCLEFULL": tape.CycleFullError,
    "TAPE_EPOISONED": tape.PoisonedError,
    "TAPE_EINVAL": tape.ArgumentError,
    "TAPE_EROLLCYCLE": tape.ArgumentError,
    "TAPE_ECLOCK": tape.ArgumentError,
}


@pytest.mark.parametrize(("name", "cls"), TABLE.items(), ids=TABLE.keys())
def test_each_core_code_raises_its_class_with_the_core_text(name: str, cls: type[Exception]) -> None:
    with pytest.raises(cls) as raised:
        check(getattr(lib, name), "/q")
    assert type(raised.value) is cls
    assert str(raised.value).startswith("/q: ")
    assert len(str(raised.value)) > len("/q: ")


def test_a_system_error_is_an_oserror_with_its_errno() -> None:
    with pytest.raises(OSError) as raised:
        check(-errno.ENOSPC, "/q")
    assert isinstance(raised.value, tape.TapeOSError)
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == "/q"


def test_enoent_when_opening_is_queue_not_found() -> None:
    with pytest.raises(tape.QueueNotFoundError) as raised:
        check(-errno.ENOENT, "/q", opening=True)
    assert raised.value.errno == errno.ENOENT
    with pytest.raises(tape.TapeOSError):
        check(-errno.ENOENT, "/q")


def test_a_non_negative_code_is_not_an_error() -> None:
    check(0)
    check(1)


BUILTINS = {
    tape.IncompatibleQueueError: ValueError,
    tape.NotAQueueError: ValueError,
    tape.QueueNotFoundError: FileNotFoundError,
    tape.QueueClosedError: ValueError,
    tape.ReadOnlyError: PermissionError,
    tape.EncodeError: TypeError,
    tape.DecodeError: tape.CorruptionError,
    tape.ArgumentError: ValueError,
    tape.ArgumentTypeError: TypeError,
    tape.EntryTooLargeError: ValueError,
    tape.TapeOSError: OSError,
    tape.CycleFullError: tape.TapeError,
    tape.PoisonedError: tape.TapeError,
}


@pytest.mark.parametrize(("cls", "builtin"), BUILTINS.items(), ids=[c.__name__ for c in BUILTINS])
def test_every_error_is_a_tape_error_and_its_builtin(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, tape.TapeError)
    assert issubclass(cls, builtin)
