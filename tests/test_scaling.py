import json

import pytest

from charrnn.tools.args import byte_size
from tests.conftest import HANG, TINY, run_scripts


def test_sizes_read_as_a_person_writes_them():
    assert [byte_size(s) for s in ("10MB", "1GB", "1.5kb", "123", "20B")] == [10**7, 10**9, 1500, 123, 20]


@pytest.mark.slow  # three Python processes start torch
def test_the_scaling_report_trains_each_corpus_twice_the_second_time_from_the_cache(corpus, tmp_path):
    (proc,) = run_scripts(["-m", "charrnn.tools.scaling", "--sizes", "20KB", "--steps", "2", "--source", str(corpus),
                           "--dir", str(tmp_path), "--json", str(tmp_path / "figures.json"),
                           *[o for o in TINY if "eval_interval" not in o]], timeout=HANG)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads((tmp_path / "figures.json").read_text())
    assert row["first"]["chars"] == row["later"]["chars"] >= 20_000
    assert len(list(tmp_path.glob("cache_*/*.ids"))) == 1
