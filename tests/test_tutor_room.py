"""The BPTT tutor keeps the learner's code in its room, and every stop of python -m charrnn.gradcheck is one line.

Driven as a user drives it: `python -m charrnn.gradcheck --yours FILE` in a subprocess, from the learner's
own folder, with its HOME and TMPDIR pointed into the test's folder; the user's files hashed before and
after, the learner's processes counted by their session, signals sent at named moments (each moment
announced by the learner's code or by the process's own signal mask, never guessed from the clock).
"""

import fnmatch
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from charrnn.errors import UserError
from charrnn.gradcheck import main as gradcheck_main
from charrnn.gradcheck.tutor import worker
from charrnn.gradcheck.tutor.check import check_bptt
from charrnn.gradcheck.tutor.sandbox import MEMORY_LIMIT, LearnerError, Sandbox, imports_torch
from charrnn.gradcheck.tutor.shapes import Opaque, Returned
from tests.conftest import HANG, REPO
from tests.runtree import script

FIXTURES = REPO / "tests" / "fixtures" / "bptt"
MIN_CHAR = (FIXTURES / "min_char_rnn.py").read_text()
BACKWARD = "    # backward pass"


def learner_file(path: Path, in_lossfun: str = "", at_import: str = "", source: str = MIN_CHAR) -> Path:
    """min-char-rnn's lossFun (correct), with code run at each call before its backward pass and at import."""
    assert BACKWARD in source or not in_lossfun
    text = source.replace(BACKWARD, "".join(f"    {line}\n" for line in in_lossfun.splitlines()) + BACKWARD, 1)
    path.write_text(f"{text}\n{at_import}\n")
    return path


def user(tmp_path) -> dict:
    """The user's folder (the learner's file beside their train.log), their HOME and an empty TMPDIR."""
    folders = {name: tmp_path / name for name in ("user", "home", "tmp")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (folders["user"] / "train.log").write_text("the user's own training log\n")
    (folders["home"] / "keep.txt").write_text("the user's own file\n")
    return folders


def gradcheck(folders: dict, *args: str, stdout=subprocess.PIPE, shell: bool = False) -> subprocess.Popen:
    """python -m charrnn.gradcheck ARGS from the user's folder, started as from a terminal (shell: sh -c ARGS,
    with $0 the python)."""
    env = {"HOME": str(folders["home"]), "TMPDIR": str(folders["tmp"]),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = ["sh", *args] if shell else ["-m", "charrnn.gradcheck", *args]
    if shell:
        return subprocess.Popen(command, cwd=folders["user"], env={**os.environ, **env}, stdout=stdout,
                                stderr=subprocess.PIPE, text=True)
    return script(*command, cwd=folders["user"], env=env, stdout=stdout)


def hashes(*folders: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for folder in folders for p in sorted(folder.rglob("*"))}


def state(pid: int) -> str | None:
    """The process's state letter, or None where it has ended (a zombie has ended: it runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    letter = stat.rpartition(")")[2].split()[0]
    return None if letter in "ZX" else letter


def in_session(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] not in "ZX":
                members.append(int(entry.name))
    return members


def until(condition, what: str):
    """Wait for a condition that the code under test makes true (a hang guard, not a timing)."""
    deadline = time.monotonic() + HANG
    while not (value := condition()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)
    return value


def gone(pids) -> bool:
    return all(state(pid) is None for pid in pids)


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for the signal (its SigCgt mask), i.e. has run end_on_signals."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True   # ended: the caller's wait is over
    mask = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(mask >> (signum - 1) & 1)


def test_the_learners_code_runs_in_a_room_and_leaves_no_process_and_every_user_file_as_it_was(tmp_path):
    folders = user(tmp_path)
    report, pids = tmp_path / "report.json", tmp_path / "pids"
    (folders["user"] / "helper.py").write_text("VALUE = 7\n")
    learner_file(folders["user"] / "my_rnn.py", at_import=f"""
import json, os, tempfile
import helper                                        # beside the file: their folder is on the import path
open("train.log", "w").write("the learner's log")    # their working directory
open("made_here.txt", "w").write("x")
open(os.path.expanduser("~/.learner_rc"), "w").write("x")
if os.path.exists(os.path.expanduser("~/keep.txt")):
    os.remove(os.path.expanduser("~/keep.txt"))
tempfile.mkstemp()
json.dump({{"cwd": os.getcwd(), "home": os.path.expanduser("~"), "helper": helper.VALUE}}, open({str(report)!r}, "w"))
""", in_lossfun=f"""
import os, subprocess, time
child = subprocess.Popen(["sleep", "1000"])
forked = os.fork()
if forked == 0:
    time.sleep(1000)
open({str(pids)!r}, "a").write(f"{{os.getsid(0)}} {{child.pid}} {{forked}} {{os.getpid()}}\\n")
""")
    before = hashes(folders["user"], folders["home"])
    proc = gradcheck(folders, "--yours", "my_rnn.py")
    out, err = proc.communicate(timeout=HANG)   # a fork held the answers' pipe: this hung before
    assert proc.returncode == 0 and out.splitlines()[-1] == "PASS", out + err
    assert hashes(folders["user"], folders["home"]) == before
    seen = json.loads(report.read_text())
    assert seen["helper"] == 7
    for place in ("cwd", "home"):
        assert Path(seen[place]).is_relative_to(folders["tmp"]), seen   # a temporary directory of the check's
    assert list(folders["tmp"].iterdir()) == []   # removed, with what the learner's code made in it
    lines = [[int(n) for n in line.split()] for line in pids.read_text().splitlines()]
    assert len(lines) >= 3   # one per call of lossFun (a problem each): each started a subprocess and a fork
    until(lambda: gone(pid for line in lines for pid in line[1:]), "the learner's processes ended")
    assert in_session(lines[0][0]) == []


def stop_at(tmp_path, moment: str, signum: int) -> tuple:
    """Start a check, send the signal at the moment, and return the process, the pids of what the learner's
    code started, and the folders."""
    folders = user(tmp_path)
    marker = tmp_path / "started"
    record = f"""
import os, subprocess
child = subprocess.Popen(["sleep", "1000"])
open({str(marker)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
"""
    if moment == "checking":
        learner_file(folders["user"] / "my_rnn.py", in_lossfun=record + "while True:\n    pass")
    else:
        learner_file(folders["user"] / "my_rnn.py", at_import=record + "import time\ntime.sleep(1000)")
    proc = gradcheck(folders, "--yours", "my_rnn.py", "--time-limit", "86400")
    return proc, marker, folders


@pytest.mark.parametrize("stops", [
    (("importing", signal.SIGINT), ("loading", signal.SIGTERM), ("checking", signal.SIGHUP)),
    pytest.param((("importing", signal.SIGTERM), ("importing", signal.SIGHUP), ("loading", signal.SIGINT),
                  ("loading", signal.SIGHUP), ("checking", signal.SIGINT), ("checking", signal.SIGTERM)),
                 marks=pytest.mark.slow),
], ids=["three", "the-other-six"])
def test_every_signal_at_every_moment_ends_in_one_line_with_nothing_left(tmp_path, stops):
    runs = [stop_at(tmp_path / f"{moment}-{signum}", moment, signum) for moment, signum in stops]
    before = [hashes(folders["user"], folders["home"]) for _, _, folders in runs]
    started = []
    for (moment, signum), (proc, marker, _) in zip(stops, runs):   # all at once: each is mostly imports
        if moment == "importing":   # the handlers are set before the slow imports: send it as soon as they are
            until(lambda: catches(proc.pid, signal.SIGHUP), "the handlers were set")
        else:
            started += [int(pid) for pid in until(lambda: marker.exists() and marker.read_text(), "the code ran")
                        .split()]
        proc.send_signal(signum)
    for (moment, signum), (proc, _, folders), hashed in zip(stops, runs, before):
        out, err = proc.communicate(timeout=HANG)
        name = "interrupted" if signum == signal.SIGINT else signal.Signals(signum).name
        assert proc.returncode == -signum, (moment, err)
        assert (out, err) == ("", f"{name}: the check stopped; nothing it started is left running\n"), moment
        assert list(folders["tmp"].iterdir()) == [], moment
        assert hashes(folders["user"], folders["home"]) == hashed, moment
    until(lambda: gone(started), "the learner's processes ended")


def test_a_tool_killed_outright_takes_the_learners_processes_along(tmp_path):
    """kill -9 leaves no handler to run: the guardian in the learner's process group ends it."""
    folders = user(tmp_path)
    marker = tmp_path / "started"
    learner_file(folders["user"] / "my_rnn.py", in_lossfun=f"""
import os, subprocess
child = subprocess.Popen(["sleep", "1000"])
open({str(marker)!r}, "w").write(f"{{os.getpid()}} {{child.pid}} {{os.getsid(0)}}")
while True:
    pass
""")
    proc = gradcheck(folders, "--yours", "my_rnn.py", "--time-limit", "86400")
    worker_pid, child, sid = (int(n) for n in until(lambda: marker.exists() and marker.read_text(), "it ran").split())
    proc.kill()
    proc.communicate(timeout=HANG)
    until(lambda: gone([worker_pid, child]) and not in_session(sid), "the learner's processes ended")


@pytest.mark.parametrize("name,fixture", [
    ("numbers.py", "min_char_rnn.py"),
    *[pytest.param("random.py", fixture, marks=pytest.mark.slow) for fixture in ("min_char_rnn.py", "min_char_rnn_torch.py")]])
def test_a_learners_file_named_like_a_standard_module_is_never_imported_by_the_tool(tmp_path, name, fixture):
    """From the learner's folder: NumPy imports numbers, torch imports random (where the interpreter's start has
    not imported it already), in the tool and, with tensors, in the worker."""
    folders = user(tmp_path)
    names = tmp_path / "imported_as"
    learner_file(folders["user"] / name, source=(FIXTURES / fixture).read_text(),
                 at_import=f"open({str(names)!r}, 'a').write(__name__ + '\\n')")
    proc = gradcheck(folders, "--yours", name)
    out, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 0 and out.splitlines()[-1] == "PASS", out + err
    assert names.read_text().split() == ["learner_0"]   # the check's own load, never the tool's import


def test_the_reports_way_out_and_the_time_limits_bounds_are_one_line_each(monkeypatch, capsys):
    learner = str(FIXTURES / "min_char_rnn.py")
    for limit in ("99999999999", "0", "-1"):
        with pytest.raises(SystemExit) as exited:
            gradcheck_main(["--yours", learner, "--time-limit", limit])
        assert exited.value.code == 2
        assert capsys.readouterr().err == (f"error: argument --time-limit: must be a whole number of seconds from 1 to "
                                           f"86400 (a day), got {limit!r} (--help lists the options)\n")
    for bad in (-1, 0, 1e12, float("nan"), "30", True):
        with pytest.raises(UserError) as refused:
            check_bptt(learner, quiet=True, time_limit=bad)
        assert str(refused.value) == (f"time_limit must be a number of seconds above 0 and at most 86400 (a day); "
                                      f"got {bad!r}")
    monkeypatch.setattr(sys, "stdout", None)   # what Python makes of a closed descriptor 1 (>&-)
    assert gradcheck_main(["--seq-length", "2"]) == 2
    assert capsys.readouterr().err == CLOSED
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        assert gradcheck_main(["--seq-length", "2"]) == 2
    assert capsys.readouterr().err == FULL


CLOSED = ("error: standard output is closed, so the report has nowhere to go; run the check with its output on a "
          "terminal, a pipe or a file (> FILE)\n")
FULL = "error: cannot write the report to standard output: No space left on device\n"


@pytest.mark.slow
def test_a_closed_or_full_stdout_is_one_line_from_a_shell(tmp_path):
    folders = user(tmp_path)
    learner_file(folders["user"] / "my_rnn.py")
    with open("/dev/full", "w") as full:
        runs = {"full": gradcheck(folders, "--yours", "my_rnn.py", stdout=full),
                "closed": gradcheck(folders, "-c", 'exec "$0" -m charrnn.gradcheck --yours my_rnn.py >&-',
                                    sys.executable, shell=True)}
        errors = {name: proc.communicate(timeout=HANG)[1] for name, proc in runs.items()}
    assert {name: proc.returncode for name, proc in runs.items()} == {"full": 2, "closed": 2}, errors
    assert errors == {"full": FULL, "closed": CLOSED}
    assert list(folders["tmp"].iterdir()) == []


def run_one(tmp_path, time_limit: float = 30, **edits):
    path = learner_file(tmp_path / "my_rnn.py", **edits)
    with Sandbox(time_limit) as box:
        loaded = box.load(path)
        args = ([1, 2], [2, 3], np.zeros((5, 1)))
        weights = {"Wxh": np.zeros((5, 7)), "Whh": np.zeros((5, 5)), "Why": np.zeros((7, 5)), "bh": np.zeros((5, 1)),
                   "by": np.zeros((7, 1)), "vocab_size": 7, "hidden_size": 5, "seq_length": 2}
        return box.call(loaded, "lossFun", args, weights, "numpy", "lossFun")


@pytest.mark.parametrize("edits,message", [
    ({"in_lossfun": "n = int(input('steps? '))"},
     "lossFun called input(), which has nothing to read: the check runs your code with no keyboard; give the value as "
     "an argument or a constant"),
    ({"in_lossfun": f"big = np.empty({MEMORY_LIMIT + (1 << 30)}, dtype=np.uint8)"},
     f"lossFun ran out of memory (Unable to allocate * GiB for an array with shape ({MEMORY_LIMIT + (1 << 30)},) and "
     f"data type uint8): the check's problems are a few kilobytes and your code may use {MEMORY_LIMIT / 2**30:g} GiB, "
     f"so a shape is likely computed wrong; the traceback above shows where"),
    ({"at_import": "def spin():\n    while True:\n        pass\nspin()", "time_limit": 1},
     "loading my_rnn.py did not finish within 1 s (a loop that never ends?); --time-limit SECONDS gives it longer"),
])
def test_what_a_learners_code_does_wrong_is_said_for_what_it_is(tmp_path, edits, message):
    with pytest.raises(LearnerError) as refused:
        run_one(tmp_path, **edits)
    assert fnmatch.fnmatchcase(refused.value.message, message), refused.value.message
    assert refused.value.raised is None   # so that nothing is appended about float64


def test_any_encoding_python_accepts_is_read_and_any_other_is_named(tmp_path):
    declared = tmp_path / "latin.py"
    declared.write_bytes(b"# -*- coding: latin-1 -*-\n# caf\xe9, na\xefve\n" + MIN_CHAR.encode())
    undeclared = tmp_path / "undeclared.py"
    undeclared.write_bytes(b"# caf\xe9\n" + MIN_CHAR.encode())
    with Sandbox() as box:
        loaded = box.load(declared)
        assert "lossFun" in [f["name"] for f in loaded.functions] and "# café, naïve" in loaded.source
        with pytest.raises(LearnerError) as refused:
            box.load(undeclared)
    assert refused.value.message == (
        "loading undeclared.py: the file is not UTF-8 and names no other encoding; save it as UTF-8, or name its "
        "encoding on its first or second line as PEP 263 says (# -*- coding: latin-1 -*-)")


def test_what_the_worker_sends_is_read_as_data_and_a_pickle_in_its_place_runs_nothing(tmp_path):
    ran = tmp_path / "ran"
    payload = f"""
import gc, io, os, pickle, struct
class Payload:
    def __reduce__(self):
        return (os.system, ("touch {ran}",))
replies = [f for f in gc.get_objects() if isinstance(f, io.BufferedWriter) and isinstance(f.name, int) and f.name > 2]
data = pickle.dumps(("ok", Payload()))
replies[0].write(struct.pack("!Q", len(data)) + data)
replies[0].flush()
while True:
    pass
"""
    with pytest.raises(LearnerError) as refused:
        run_one(tmp_path, in_lossfun=payload)
    assert refused.value.message.startswith("lossFun: the process running your code sent something that is not an "
                                            "answer (not a message: ")
    assert not ran.exists()


def reading(data: bytes):
    """read(n) over bytes, as worker.receive takes it."""
    stream = memoryview(data)

    def read(n):
        nonlocal stream
        chunk, stream = bytearray(stream[:n]), stream[n:]
        return chunk if len(chunk) == n else None

    return read


def round_trip(value):
    class Pipe:
        data = bytearray()

        def write(self, chunk):
            self.data += chunk

        def flush(self):
            pass

    pipe = Pipe()
    worker.send(pipe, value)
    return worker.receive(reading(bytes(pipe.data)))


def test_the_protocol_carries_every_value_the_check_exchanges_and_refuses_anything_else():
    sent = ("ok", [1, 2.5, float("inf"), None, True, "text", 3 + 4j, 10**30],
            {"Wxh": np.arange(6.0).reshape(2, 3), 1: np.float32(2.5), (1, "a"): np.zeros((0, 3), np.int64)},
            Returned("tensor", np.array([[True, False]])), Returned("ndarray", np.array(1.5)), Opaque("Widget"))
    got = round_trip(sent)
    assert type(got) is tuple and type(got[1]) is list and got[1][:-1] == sent[1][:-1] and got[1][-1] == 10**30
    assert set(got[2]) == {"Wxh", 1, (1, "a")} and type(got[2][1]) is np.float32
    assert np.array_equal(got[2]["Wxh"], sent[2]["Wxh"]) and got[2][(1, "a")].shape == (0, 3)
    assert got[2]["Wxh"].flags.writeable   # a learner may update the arrays it is given in place
    assert got[3].kind == "tensor" and got[3].value.dtype == bool and got[4].value.shape == ()
    assert got[5] == Opaque("Widget")
    strings = round_trip(("ok", Returned("ndarray", np.array([["a", "b"]]))))[1]
    assert strings.value.shape == (1, 2) and strings.value.dtype == object   # named and shaped, its data not sent
    for header in ({"value": {"array": 0}, "arrays": [["|O", [1]]]}, {"value": {"pickle": "x"}, "arrays": []},
                   {"value": {"array": 5}, "arrays": []}, {"value": None, "arrays": [["<f8", [-1]]]}):
        data = json.dumps(header).encode()
        with pytest.raises(ValueError, match="not a message"):
            worker.receive(reading(len(data).to_bytes(8, "big") + data + bytes(8)))


def test_ctrl_c_in_a_notebook_raises_keyboardinterrupt_with_nothing_left(tmp_path):
    """check_bptt in Python: the interrupt is the caller's to handle, and the worker's group and room go first."""
    marker = tmp_path / "started"
    path = learner_file(tmp_path / "my_rnn.py", in_lossfun=f"""
import os, subprocess
child = subprocess.Popen(["sleep", "1000"])
open({str(marker)!r}, "w").write(f"{{os.getpid()}} {{child.pid}} {{os.getcwd()}}")
while True:
    pass
""")

    def interrupt_once_it_runs():
        until(lambda: marker.exists() and marker.read_text(), "the learner's code ran")
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt_once_it_runs)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        check_bptt(path, quiet=True, time_limit=86400)
    thread.join()
    worker_pid, child, room = marker.read_text().split()
    until(lambda: gone([int(worker_pid), int(child)]), "the learner's processes ended")
    assert not Path(room).parent.exists()   # the room: the worker's working directory and all beside it


def test_the_workers_start_is_not_the_learners_time(tmp_path, monkeypatch):
    """A Python that takes 2 s to start (a busy machine, as a sitecustomize makes it here) and a 1 s limit: the
    file still loads, since the limit counts from the worker's first word."""
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "sitecustomize.py").write_text("import time\ntime.sleep(2)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "slow"), os.environ.get("PYTHONPATH", "")]))
    with Sandbox(time_limit=1) as box:
        assert "lossFun" in [f["name"] for f in box.load(learner_file(tmp_path / "my_rnn.py")).functions]


def test_torch_imported_through_a_helper_beside_the_file_is_imported_before_the_learners_time_starts(tmp_path):
    (tmp_path / "course_helper.py").write_text("import torch\n")
    (tmp_path / "plain_helper.py").write_text("import math\n")
    learner_file(tmp_path / "uses_helper.py", at_import="from course_helper import *")
    learner_file(tmp_path / "plain.py", at_import="import plain_helper")
    assert imports_torch(tmp_path / "uses_helper.py") and not imports_torch(tmp_path / "plain.py")
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("import a\n")   # a circle of the learner's own imports ends
    assert not imports_torch(tmp_path / "a.py")
