import json
import re

import pytest

from tests.conftest import HANG, TINY, run_scripts

joblib = pytest.importorskip("joblib")
pytest.importorskip("hydra_plugins.hydra_joblib_launcher")


@pytest.mark.slow  # three Python processes start torch: ~10 s on an idle 2-core machine
def test_a_sweep_runs_its_jobs_side_by_side_each_with_its_share_of_the_cores(corpus, tmp_path):
    (proc,) = run_scripts(["train.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"data.path={corpus}", *TINY,
                           "train.max_iters=5", "seed=1,2"], timeout=HANG)
    assert proc.returncode == 0, proc.stderr
    job_dirs = [tmp_path / "sweep" / name for name in ("0_seed-1", "1_seed-2")]  # number, then the swept value
    results = [json.loads((job_dir / "result.json").read_text()) for job_dir in job_dirs]
    assert [r["steps"] for r in results] == [5, 5] and results[0]["val_loss"] != results[1]["val_loss"]
    # Each job saw cores // n_jobs threads in every math library (joblib's loky workers set them).
    share = max(1, joblib.cpu_count() // 2)
    lines = re.findall(r"threads: .*", proc.stdout)
    assert len(lines) == 2, proc.stdout
    for line in lines:
        counts = [int(count) for count in re.findall(r"(\d+)(?:,|$|;)", line.split(";")[0])]
        assert counts and all(count == share for count in counts), line
