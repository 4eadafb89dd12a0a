"""Every option of every config group in conf/ composes into a config that passes the checks."""

import pytest

from charrnn.config import to_config
from tests.conftest import REPO, compose_raw

GROUPS = sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir())
# the keys that name a group's chosen option (experiment presets name none: they set other groups)
NAMED_BY = {"backend": "backend.name", "data": "data.name", "model": "model.cell", "optim": "optim.name"}
NEEDS = {("data", "text"): ["data.path=corpus.txt"]}  # a group option with a mandatory key


@pytest.mark.parametrize("group,option", [(group, conf.stem) for group in GROUPS
                                          for conf in sorted((REPO / "conf" / group).glob("*.yaml"))])
def test_every_option_of_every_group_composes_and_validates(group, option):
    cfg = to_config(compose_raw([f"{group}={option}", *NEEDS.get((group, option), [])]))
    if group in NAMED_BY:
        section, key = NAMED_BY[group].split(".")
        assert getattr(getattr(cfg, section), key) == option
    else:
        assert group == "experiment" and cfg != to_config(compose_raw([]))  # a preset changes something


def test_every_group_is_covered():
    assert set(GROUPS) == {*NAMED_BY, "experiment"}


def test_the_one_minute_preset_is_the_five_minute_one_on_shorter_chunks_for_a_minute():
    one, five = (to_config(compose_raw([f"experiment={name}"])) for name in ("gru_1min", "gru_5min"))
    assert (one.train.seq_length, one.train.max_seconds, five.train.seq_length, five.train.max_seconds) == (
        32, 60, 64, 300)
    one.train.seq_length, one.train.max_seconds = five.train.seq_length, five.train.max_seconds
    assert one == five
