"""The damage campaign of `make fuzz` (tests/fuzz_damage.py), short: 400 seeded mutations.

Every mutation is judged as in the full campaign: no signal, no hang, no wrong
value, no gap, no write that reuses an index or that a reader going forward
from the start does not reach (RELIABILITY.md, "Damage campaign").
"""

from __future__ import annotations

from pathlib import Path

import pytest

import fuzz_damage


@pytest.mark.parametrize("seed", [7, 8])
def test_damage_campaign_finds_no_failure(tmp_path: Path, seed: int) -> None:
    tally, _ = fuzz_damage.campaign(tmp_path, 200, seed)
    assert sum(tally.by_aim.values()) == 200
    assert tally.failures == 0, "\n".join(tally.every)
    assert tally.by_outcome["written"] > 0 and tally.by_outcome["refused"] > 0
