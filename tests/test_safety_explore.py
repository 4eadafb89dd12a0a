"""python -m charrnn.explore under bad input, driven as a user drives it: files the user made are never
replaced, every place it cannot write is one line, a page too large for memory is refused before it is
built, and a signal at any moment is one line with no temporary file left."""

import hashlib
import os
import re
import resource
import signal
import subprocess
import time

import pytest

import charrnn
from charrnn.errors import UserError
from tests.conftest import HANG, assert_user_error, run_scripts
from tests.runtree import script
from tests.test_api import TEXT, tiny_checkpoint


def hashes(root):
    """Every file under root (links as their targets' names): path -> digest."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            out[path] = (f"link to {os.readlink(path)}" if os.path.islink(path)
                         else hashlib.sha256(open(path, "rb").read()).hexdigest())
    return out


def explore(*args, positions=20):
    return ["-m", "charrnn.explore", *args, f"lookback_positions={positions}"]


def test_a_file_the_user_made_is_never_replaced(tmp_path):
    run = tiny_checkpoint(tmp_path / "dl", "gru")
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's own file\n")
    (run / "explore.html").write_text("<p>my notes about this model</p>\n")           # the user's, at the default path
    (run / "notes.html").write_text("<p>more notes</p>\n")
    (run / ".explore_z.html.tmp").symlink_to(outside)                                  # the old fixed temporary name
    (run / "explore_z.html").symlink_to(outside)                                       # a link where a page would go
    (run / ".explore-1.html.12345.tmp").write_text("left by a killed build")           # nobody holds it
    text = tmp_path / "z.txt"
    text.write_text(TEXT * 3)
    before = hashes(tmp_path)
    default, beside_link, named, directory, proc = run_scripts(
        explore(f"checkpoint={run / 'ckpt_best.npz'}"),
        explore(f"checkpoint={run}", f"text={text}"),
        explore(f"checkpoint={run}", f"out={run / 'notes.html'}"),
        explore(f"checkpoint={run}", f"out={tmp_path}"),
        explore(f"checkpoint={run}", "out=/proc/x.html"))
    assert default.returncode == 0 and default.stdout.strip() == str(run / "explore-1.html"), default.stderr
    assert f"{run / 'explore.html'} is not an explorer page; left it alone and wrote the page beside it" in default.stderr
    assert beside_link.returncode == 0 and beside_link.stdout.strip() == str(run / "explore_z-1.html")
    assert_user_error(named, f"out={run / 'notes.html'} is a file that is not an explorer page, which the explorer "
                             f"never replaces; name another path, or move that file away first")
    assert_user_error(directory, f"out={tmp_path} is a directory; name the page's file, e.g. "
                                 f"out={tmp_path / 'explore.html'}")
    assert_user_error(proc, "cannot write the page to /proc/x.html: ")
    after = hashes(tmp_path)
    made = {str(run / "explore-1.html"), str(run / "explore_z-1.html")}
    assert set(after) == set(before) - {str(run / ".explore-1.html.12345.tmp")} | made
    assert {p: h for p, h in after.items() if p not in made} == {p: h for p, h in before.items() if p in after}
    # a page of its own is replaced: the next run writes explore-1.html again, not explore-2.html
    again, = run_scripts(explore(f"checkpoint={run}", "length=50"))
    assert again.returncode == 0 and again.stdout.strip() == str(run / "explore-1.html")
    assert sorted(p.name for p in run.iterdir() if p.name.startswith((".explore", "explore"))) == [
        ".explore_z.html.tmp", "explore-1.html", "explore.html", "explore_z-1.html", "explore_z.html"]


def test_a_page_too_large_for_memory_is_refused_before_it_is_built(tmp_path):
    run = tiny_checkpoint(tmp_path / "run", "lstm")
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as file:   # 64 GB that take no disk: sparse
        file.truncate(64 * 2**30)
    small = tmp_path / "small.txt"
    small.write_text(TEXT * 3)
    long_text, lags = run_scripts(
        explore(f"checkpoint={run}", f"text={huge}", "length=100000000000"),
        explore(f"checkpoint={run}", f"text={small}", "lookback_lags=1000000"))
    assert_user_error(long_text, "the page of 68,719,476,736 characters (look-back 20 x 16) needs about ")
    assert "GB is available; lower length= (or lookback_positions=, lookback_lags=)" in long_text.stderr
    assert_user_error(lags, f"lookback_lags=1,000,000 reaches before the text's start ({len(TEXT) * 3:,} characters); "
                            f"pass lookback_lags={len(TEXT) * 3 - 1:,} or less")
    # refused before anything was read or allocated: well under the memory a page of it would take
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 600 * 1024


def test_help_lists_explores_own_keys():
    shown, = run_scripts(["-m", "charrnn.explore", "--help"])
    assert shown.returncode == 0 and shown.stderr == ""
    keys = re.findall(r"^  (\w+)=", shown.stdout, re.M)
    assert keys == ["checkpoint", "text", "length", "out", "lookback_positions", "lookback_lags", "select", "show",
                    "skip_unknown"]
    assert "backend" not in shown.stdout and "optim" not in shown.stdout


def past_its_first_line(proc: subprocess.Popen) -> None:
    """Wait until proc runs its own script: NumPy, which only the script's imports load, is mapped (a signal
    before that, while Python imports its own site module, is Python's to report)."""
    while proc.poll() is None:
        try:
            if "_multiarray_umath" in open(f"/proc/{proc.pid}/maps").read():
                return
        except OSError:
            return
        time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                    pytest.param(signal.SIGHUP, marks=pytest.mark.slow)])
def test_a_signal_at_any_moment_is_one_line_and_leaves_no_temporary_file(tmp_path, signum):
    """Signalled during its imports, its start, the build and the write: each ends in one line and the
    exit code 128 + n, or had finished with its page whole; no temporary file is left."""
    run = tiny_checkpoint(tmp_path / "run", "lstm", corpus_text=TEXT * 400)
    text = tmp_path / "t.txt"
    text.write_text(TEXT * 300)
    delays = (0.0, 0.5, 1.5, 3.0, 5.0)   # after the scripts' imports began
    pages = [tmp_path / f"p{k}.html" for k in range(len(delays))]
    procs = [script(*explore(f"checkpoint={run}", f"text={text}", "length=20000", f"out={page}", positions=600),
                    stdout=subprocess.DEVNULL) for page in pages]   # as from a terminal, whatever ran the suite
    for proc in procs:
        past_its_first_line(proc)
    began = time.monotonic()
    for delay, proc in zip(delays, procs):
        time.sleep(max(0.0, began + delay - time.monotonic()))
        proc.send_signal(signum)
    ends = []
    for k, (proc, page) in enumerate(zip(procs, pages)):
        _, err = proc.communicate(timeout=HANG)
        # done: exit 0, or the signal came as the finished script exited (a host fast enough builds the page
        # before the last signals are sent); either way the page is whole
        if proc.returncode == 0 or "MB, built in" in err:
            assert proc.returncode in (0, 128 + signum, -signum), (k, proc.returncode)
            assert page.read_text(encoding="utf-8").rstrip().endswith("</html>")
            ends.append("done")
            continue
        word = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
        assert err.strip() == word, (k, err)
        assert proc.returncode in (128 + signum, -signum), (k, proc.returncode)
        assert not page.exists()
        ends.append("stopped")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert ends[0] == "stopped", ends


def test_model_explore_never_replaces_a_file_it_did_not_write(tmp_path):
    m = charrnn.load(tiny_checkpoint(tmp_path / "run", "rnn"))
    mine = tmp_path / "mine.html"
    mine.write_text("<p>mine</p>")
    with pytest.raises(UserError, match="is a file that is not an explorer page, which the explorer never replaces"):
        m.explore(TEXT, mine, lookback_positions=0)
    assert mine.read_text() == "<p>mine</p>"
    page = m.explore(TEXT, tmp_path / "page.html", lookback_positions=0)
    assert m.explore(TEXT[:20], page, lookback_positions=0) == page   # its own page: replaced
    assert '"ids":[' in page.read_text() and len(list(tmp_path.glob("*.tmp"))) == 0
