"""runs/latest, the link to the newest run, is never a directory a run is made in or through: name=latest
gets a label of its own, and a run directory under the link is refused; the link stays a link."""

import os

import pytest

import charrnn
from charrnn.errors import UserError
from tests.conftest import TINY
from tests.runtree import assert_clean, finish, script, snapshot, train_in_process, write_corpus


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder where a run was made (runs/first/D1) and runs/latest links it, as train.py leaves it."""
    corpus = write_corpus(tmp_path)
    train_in_process(corpus, tmp_path / "runs" / "first" / "D1")
    (tmp_path / "runs" / "latest").symlink_to(os.path.join("first", "D1"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", ["latest", "LATEST"])
def test_a_run_named_latest_is_made_beside_the_link_and_the_link_moves_to_it(folder, name):
    first = snapshot(folder / "runs" / "first")
    result = charrnn.train([f"data.path={folder / 'corpus.txt'}", *TINY, "train.max_iters=2", f"name={name}"])
    assert result.run_dir.parent == folder / "runs" / f"{name}-run"
    assert snapshot(folder / "runs" / "first") == first   # nothing made inside the earlier run
    latest = folder / "runs" / "latest"
    assert latest.is_symlink() and latest.resolve() == result.run_dir.resolve()
    assert {p.name for p in (folder / "runs").iterdir()} == {"first", "latest", f"{name}-run"}


def test_a_run_directory_through_the_link_is_refused_and_leaves_nothing(folder):
    before = snapshot(folder)
    with pytest.raises(UserError, match=r"/runs/latest/x is inside runs/latest, the link to the newest run "
                                        r"\(first/D1\): a run made there would be made inside that run; name "
                                        r"another directory with hydra.run.dir=PATH$"):
        charrnn.train([f"data.path={folder / 'corpus.txt'}", *TINY, "train.max_iters=2", "hydra.run.dir=runs/latest/x"])
    (refused,) = finish(script("train.py", f"data.path={folder / 'corpus.txt'}", *TINY, "train.max_iters=2",
                               "hydra.run.dir=runs/latest", cwd=folder))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"error: {folder / 'runs' / 'latest'} is inside runs/latest, the link to the newest run (first/D1): a run "
        f"made there would be made inside that run; name another directory with hydra.run.dir=PATH"], refused.stderr
    assert snapshot(folder) == before
