"""What train.py writes, and where: a run has an identity that its checkpoints carry, so it continues in
place only in its own directory and forks elsewhere; a new run starts only in a new or empty directory;
no write follows a symlink that charrnn did not make; a run directory holds what the README lists and
nothing else, and its path pastes into checkpoint= and train.resume= as it is."""

import json
import os
import re
import shlex
import shutil

import pytest

from charrnn.checkpoint import load_checkpoint
from charrnn.commandline import override
from charrnn.training import loop as trainer
from charrnn.start import run_config
from tests.conftest import HANG, REPO, assert_user_error, compose_raw
from tests.runtree import (FINISHED, RUN_FILES, TENSORBOARD, assert_clean, finish, run_files, script, snapshot,
                           train_in_process, write_corpus)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished runs of different seeds, A and B."""
    tmp = tmp_path_factory.mktemp("two_runs")
    corpus = write_corpus(tmp)
    return corpus, {name: train_in_process(corpus, tmp / name, f"seed={seed}")
                    for seed, name in enumerate(("A", "B"), start=1)}


def resume_in_process(path, new_dir, *overrides):
    """train.py's resume, in this process: the checkpoint's config with the overrides, then the run."""
    args = [f"train.resume={path}", *overrides]
    return trainer.train(run_config(compose_raw(args), args), new_dir)


def copy_run(source, destination):
    shutil.copytree(source, destination, symlinks=True)
    return destination


def test_a_checkpoint_continues_in_place_only_in_its_own_runs_directory(two_runs, tmp_path, capsys):
    """In place means the same run: the directory's ckpt_last.npz, result.json and config.yaml are that
    run's own. Anything else (another run's checkpoint copied in, a checkpoint downloaded into a folder of
    the user's, a result.json that is not a file) forks into a new directory, and the folder it came from
    is left as it was."""
    _, runs = two_runs
    a = copy_run(runs["A"], tmp_path / "A")
    shutil.copy(runs["B"] / "ckpt_last.npz", a / "b.npz")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "config.yaml").write_text("my own settings: 1\n")
    (downloads / "result.json").write_text('{"mine": true}\n')
    for name in ("ckpt_last.npz", "model.npz"):
        shutil.copy(runs["B"] / "ckpt_last.npz", downloads / name)
    odd = copy_run(runs["A"], tmp_path / "odd")
    (odd / "result.json").unlink()
    (odd / "result.json").mkdir()
    before = snapshot(tmp_path)
    (proc,) = finish(script("train.py", f"train.resume={a / 'b.npz'}", "train.max_iters=22",
                            f"hydra.run.dir={tmp_path / 'fork'}"))
    assert_clean(proc)
    assert "continuing in a new run directory" in proc.stdout, proc.stdout
    forks = {tmp_path / "fork": load_checkpoint(runs["B"] / "ckpt_last.npz").progress["run_id"]}
    for i, (path, origin) in enumerate([(downloads / "ckpt_last.npz", runs["B"]), (downloads / "model.npz", runs["B"]),
                                        (odd, runs["A"])]):
        result = resume_in_process(path, tmp_path / f"fork{i}", "train.max_iters=22")
        assert result.run_dir == tmp_path / f"fork{i}", path
        forks[result.run_dir] = load_checkpoint(origin / "ckpt_last.npz").progress["run_id"]
        assert "continuing in a new run directory" in capsys.readouterr().out, path
    for fork, origin_identity in forks.items():
        progress = load_checkpoint(fork / "ckpt_last.npz").progress
        assert progress["step"] == 22 and progress["run_id"] != origin_identity, fork
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("fork")} == before


def test_a_new_run_starts_only_in_a_new_or_empty_directory(two_runs, tmp_path):
    """hydra.run.dir naming a folder of the user's, or an earlier run whose checkpoints were deleted: refused
    before anything is written. A start refused later leaves the user's empty directory where it was."""
    corpus, runs = two_runs
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("my own settings: 1\n")
    (project / "result.json").write_text('{"mine": true}\n')
    stripped = copy_run(runs["A"], tmp_path / "stripped")
    for checkpoint in stripped.glob("ckpt_*.npz"):
        checkpoint.unlink()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / ".notes").write_text("mine\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    before = snapshot(tmp_path)
    common = [f"data.path={corpus}", *FINISHED]
    in_project, in_stripped, in_hidden, refused_later = finish(
        script("train.py", *common, "hydra.run.dir=.", cwd=project),
        script("train.py", *common, f"hydra.run.dir={stripped}"),
        script("train.py", *common, f"hydra.run.dir={hidden}"),
        script("train.py", *common, "train.batch_size=100000", f"hydra.run.dir={empty}"))
    for proc in (in_project, in_stripped, in_hidden):
        assert_user_error(proc, "is not empty")
        assert "hydra.run.dir" in proc.stderr
    assert_user_error(refused_later, "fewer than one batch needs")
    assert snapshot(tmp_path) == before


def test_no_write_follows_a_symlink_planted_in_a_run(two_runs, tmp_path):
    """Every name charrnn writes in a run directory, its temporary files and lock included, planted as a
    symlink to a file of the user's outside the run: a resume and a refused start leave those files as
    they were."""
    corpus, runs = two_runs
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hydra").mkdir()
    (outside / "hydra" / "config.yaml").write_text("mine\n")
    planted = ["result.json", "config.yaml", ".ckpt_last.npz.tmp", ".ckpt_best.npz.tmp", ".lock", ".hydra"]
    for name in planted[:-1]:
        (outside / name.strip(".")).write_text(f"the user's {name}\n")
    a = copy_run(runs["A"], tmp_path / "A")
    for name in planted:
        target = outside / ("hydra" if name == ".hydra" else name.strip("."))
        shutil.rmtree(a / name, ignore_errors=True)
        (a / name).unlink(missing_ok=True)
        (a / name).symlink_to(target)
    only_lock = tmp_path / "only_lock"
    only_lock.mkdir()
    (only_lock / ".lock").symlink_to(outside / "lock")
    before = snapshot(outside)
    resumed, refused = finish(
        script("train.py", f"train.resume={a}", "train.max_iters=22", f"hydra.run.dir={tmp_path / 'fork'}"),
        script("train.py", f"data.path={corpus}", *FINISHED, "train.batch_size=100000", f"hydra.run.dir={only_lock}"))
    assert_clean(resumed)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert snapshot(outside) == before
    assert (only_lock / ".lock").is_symlink()


@pytest.fixture(scope="module")
def project(two_runs, tmp_path_factory):
    """A folder where a user ran train.py with the default run directory (runs/LABEL/DATE), with options
    whose values hold '.', '-', '/' and '='."""
    corpus, _ = two_runs
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(corpus, folder / "a=b.txt")
    quoted = shlex.split(override("data.path", folder / "a=b.txt"))  # as the one-line error says to quote it
    (proc,) = finish(script("train.py", *quoted, *FINISHED, "optim.lr=0.001", "model.forget_bias=-1.0", cwd=folder))
    assert_clean(proc)
    return folder


def the_run(folder):
    (label,) = [p for p in (folder / "runs").iterdir() if p.name != "latest"]
    (run_dir,) = label.iterdir()
    return run_dir


def test_a_run_directory_holds_what_the_readme_lists_and_a_refused_start_leaves_nothing(project, tmp_path):
    assert run_files(the_run(project)) == RUN_FILES | TENSORBOARD
    folder = copy_run(project, tmp_path / "project")
    before = snapshot(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    # refused by the config check, by the corpus, and after the run directory was claimed (no batch fits)
    by_config, by_corpus, by_batch, in_empty = finish(
        script("train.py", "model.hidden_size=0", cwd=folder),
        script("train.py", "data.path=none.txt", cwd=folder),
        script("train.py", *shlex.split(override("data.path", "a=b.txt")), "train.batch_size=100000", cwd=folder),
        script("train.py", *shlex.split(override("data.path", folder / "a=b.txt")), "train.batch_size=100000",
               cwd=empty))
    for proc in (by_config, by_corpus, by_batch, in_empty):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert snapshot(folder) == before
    assert list(empty.iterdir()) == []


def test_run_directories_paste_into_checkpoint_and_resume_as_they_are(project, tmp_path):
    """No '=' or ',' in a run's path, nothing a shell reads specially: `checkpoint=PATH` and
    `train.resume=PATH` take it unquoted. runs/latest names the newest run."""
    folder = copy_run(project, tmp_path / "project")
    run_dir = the_run(folder)
    pasted = str(run_dir.relative_to(folder))
    assert not re.search(r"[=,]", pasted) and shlex.quote(pasted) == pasted, pasted
    assert (folder / "runs" / "latest").resolve() == run_dir.resolve()
    by_path, by_latest = finish(script("sample.py", f"checkpoint={pasted}", "length=20", cwd=folder),
                                script("sample.py", "checkpoint=runs/latest", "length=20", cwd=folder))
    assert_clean(by_path)
    assert by_path.stdout == by_latest.stdout and len(by_path.stdout) >= 20
    record, identity = snapshot(run_dir / ".hydra"), load_checkpoint(run_dir / "ckpt_last.npz").progress["run_id"]
    # a directory of the user's named latest is theirs: it stays as it is
    (folder / "runs" / "latest").unlink()
    (folder / "runs" / "latest").mkdir()
    (folder / "runs" / "latest" / "notes.txt").write_text("mine\n")
    labels_before = sorted(p.name for p in (folder / "runs").iterdir())
    (resumed,) = finish(script("train.py", f"train.resume={pasted}", "train.max_iters=22", cwd=folder))
    assert_clean(resumed)
    progress = load_checkpoint(run_dir / "ckpt_last.npz").progress
    assert (progress["step"], progress["run_id"]) == (22, identity)  # in place: the same run
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 22
    # the resume leaves no directory of its own behind, and the run's .hydra record is the one it started with
    assert sorted(p.name for p in (folder / "runs").iterdir()) == labels_before
    assert snapshot(run_dir / ".hydra") == record
    assert (folder / "runs" / "latest" / "notes.txt").read_text() == "mine\n"


README_RUN_DIR_COMMANDS = re.compile(r"^python (?:sample\.py|train\.py train\.resume=)\S*.*$", re.M)


@pytest.mark.slow  # the README's resume trains to its train.max_iters
@pytest.mark.skipif(not os.environ.get("CHARRNN_TINYSHAKESPEARE"), reason="the README's commands train on Tiny "
                                                                          "Shakespeare (CHARRNN_TINYSHAKESPEARE)")
def test_the_readmes_commands_work_verbatim_on_the_directories_its_commands_make(tmp_path):
    readme = (REPO / "README.md").read_text()
    commands = [line.split("  #")[0].strip() for line in README_RUN_DIR_COMMANDS.findall(readme)]
    assert any(c.startswith("python sample.py") for c in commands) and any("train.resume" in c for c in commands)
    # the README's first command, made tiny (its label then holds these options too)
    (first,) = finish(script("train.py", "backend=numpy", *FINISHED, "train.eval_interval=5000", cwd=tmp_path))
    assert_clean(first)
    for command in commands:
        (proc,) = finish(script(*shlex.split(command)[1:], cwd=tmp_path), timeout=HANG)
        assert_clean(proc)
