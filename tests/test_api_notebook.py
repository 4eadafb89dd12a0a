"""charrnn from a notebook: every mistake a charrnn error with the command line's line, fresh samples,
readable objects, and memory that does not grow with the text for score and predict."""

import tracemalloc

import numpy as np
import pytest

import charrnn
from charrnn.errors import UserError
from charrnn.explore import trace as trace_module
from tests.conftest import assert_user_error, run_scripts
from tests.test_api import TEXT, tiny_checkpoint


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("notebook") / "gru", "gru")


def test_every_mistake_is_a_user_error_of_the_apt_kind(gru):
    m = charrnn.load(gru)
    cases = [
        (lambda: charrnn.load(""), ValueError, "path is empty; name a checkpoint"),
        (lambda: charrnn.load(3), TypeError, "path must be a checkpoint's or a run directory's path"),
        (lambda: charrnn.load(gru, device="cuda"), ValueError, "device='cuda' needs backend=\"torch\""),
        (lambda: charrnn.load(gru, device="gpu"), ValueError, "device='gpu' is not one of auto, cpu, cuda"),
        (lambda: m.sample(prime=123), TypeError, "prime must be text (a str), not int: 123"),
        (lambda: m.sample(length="60"), TypeError, "length must be a whole number, not str"),
        (lambda: m.sample(temperature=0), ValueError, "temperature must be positive, got 0"),
        (lambda: m.sample(top_p="most"), ValueError, "invalid config at top_p"),
        (lambda: m.predict(TEXT, k=2.5), TypeError, "k must be a whole number"),
        (lambda: m.score(b"ab"), TypeError, "text must be text (a str), not bytes"),
        (lambda: m.trace(""), ValueError, "the text is empty"),
        (lambda: m.trace(TEXT).show(2, 0), ValueError, "layer=2 is not one of this model's layers, 0 to 1"),
        (lambda: m.trace(TEXT).show(0, 8), ValueError, "unit=8 is not one of this layer's units, 0 to 7"),
        (lambda: m.trace(TEXT).show(0, 1, "c"), ValueError, "quantity='c' is not one of this cell's: h, r, z, n"),
        (lambda: charrnn.train("model=lstm"), TypeError, "overrides must be a list of \"key=value\" strings, not one"),
        (lambda: charrnn.train(["model=lstm", 3]), TypeError, "each override must be a \"key=value\" string"),
        (lambda: charrnn.train(["train.maxiters=5"]), ValueError,
         "train.maxiters is not a config key; did you mean train.max_iters?"),
        (lambda: charrnn.train(["model=lstn"]), ValueError,
         "model=lstn is not an option; did you mean model=lstm? choose model= one of gru, lstm, "),
        (lambda: charrnn.train(["prime=a(b"]), ValueError, "cannot parse the override 'prime=a(b'"),
    ]
    for call, kind, message in cases:
        with pytest.raises(UserError) as raised:
            call()
        assert isinstance(raised.value, kind), (message, raised.value)
        assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
        assert "http" not in str(raised.value)


def test_cuda_without_a_gpu_is_named_as_the_machines_not_the_checkpoints(gru):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match=r"^device=cuda but torch sees no CUDA device; use device=auto or cpu$"):
        charrnn.load(gru, backend="torch", device="cuda")


def test_the_api_and_the_command_line_say_the_same_line(tmp_path):
    [train, sample, spaced] = run_scripts(["train.py", "train.maxiters=5", f"hydra.run.dir={tmp_path / 'run'}"],
                                          ["sample.py", "checkpoint=x", "lenght=60"],
                                          ["sample.py", "checkpoint=x", "prime=To", "be", "length=9"])
    with pytest.raises(UserError) as raised:
        charrnn.train(["train.maxiters=5"])
    assert_user_error(train, str(raised.value))
    assert_user_error(sample, "lenght is not a config key; did you mean length?")
    assert_user_error(spaced, "'be' is not key=value: the shell split a value at its space; quote the value as "
                              "one word, as in 'prime=To be'")
    assert not (tmp_path / "run").exists()


def test_sample_is_fresh_at_each_call_unless_seeded(gru):
    m = charrnn.load(gru)
    first, second = m.sample(length=40), m.sample(length=40)
    assert first != second
    assert m.sample(length=40, seed=m.last_seed) == second
    assert m.sample(length=40, seed=5) == m.sample(length=40, seed=5)


def test_the_package_and_a_model_read_well(gru):
    assert {"load", "train", "check_bptt", "Model", "UserError"} <= set(dir(charrnn))
    m = charrnn.load(gru)
    assert m.vocab == "".join(sorted(set(TEXT)))
    assert np.array_equal(m.encode(m.vocab), np.arange(len(m.vocab)))
    assert repr(m.score(TEXT)).startswith("<Score: ") and "nats per character" in repr(m.score(TEXT))
    predictions = repr(m.predict(TEXT * 3, k=2))
    assert len(predictions.splitlines()) == 10 and "..." in predictions   # 4 rows each end, not 171 lists


def test_a_unit_over_a_text_renders_inline(gru):
    m = charrnn.load(gru)
    text = 'He said "(o)"\n to'
    traced = m.trace(text)
    view = traced.show(1, 3)
    page = view._repr_html_()
    cells = page.split("<span")[1:]
    assert len(cells) == len(text) and page.count('>&quot;</span>') == 2 and '>"<' not in page
    values = traced[1]["h"][:, 3]
    assert all(f'title="{v:+.4f}"' in cell for v, cell in zip(values, cells))
    assert view.scale == pytest.approx(np.percentile(np.abs(values), 99))
    strongest = int(np.argmax(np.abs(values)))   # beyond the 99th percentile: full colour
    assert ("rgb(255,0,0)" if values[strongest] > 0 else "rgb(0,0,255)") in cells[strongest]
    assert repr(view).startswith(f"<layer 1 h 3 over {len(text)} characters")
    assert traced[0]["h"].shape == (len(text), 8) and isinstance(traced, list)


def peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_score_and_predict_read_a_long_text_in_bounded_memory_with_the_same_numbers(gru, monkeypatch):
    """Chunked, the numbers are the whole text's; a text 4x longer costs only its ids and results more
    (a (T, V) logits array and (T, H) quantities kept whole cost 1.4 KB a character)."""
    m = charrnn.load(gru)
    text = TEXT * 64                                         # 3,456 characters
    whole = m.score(text)
    monkeypatch.setattr(trace_module, "CHUNK", 100)
    chunked = m.score(text)
    np.testing.assert_allclose(chunked.losses, whole.losses, rtol=1e-13, atol=0)
    monkeypatch.setattr(trace_module, "CHUNK", 10_000)
    whole_top = m.predict(text, k=3)
    monkeypatch.setattr(trace_module, "CHUNK", 100)
    chunked_top = m.predict(text, k=3)
    assert chunked_top.chars == whole_top.chars
    np.testing.assert_allclose(chunked_top.probs, whole_top.probs, rtol=1e-13)

    short, long = TEXT * 32, TEXT * 128
    per_char = (peak_bytes(lambda: m.score(long)) - peak_bytes(lambda: m.score(short))) / (len(long) - len(short))
    assert per_char < 80, per_char
    per_char = ((peak_bytes(lambda: m.predict(long, k=1).probs) - peak_bytes(lambda: m.predict(short, k=1).probs))
                / (len(long) - len(short)))
    assert per_char < 200, per_char


INTERRUPTED_IMPORT = '''
import os, signal, sys
from pathlib import Path


class InterruptAt:
    """Sends this process a Ctrl-C as the named module starts to import: the moment that left torch half-imported."""

    def __init__(self, name):
        self.name, self.done = name, False

    def find_spec(self, name, path=None, target=None):
        if name == self.name and not self.done:
            self.done = True
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, InterruptAt("torch.nn"))
import charrnn

corpus, runs = sys.argv[1], Path(sys.argv[2])
args = [f"data.path={corpus}", "model.hidden_size=8", "train.batch_size=2", "train.seq_length=8", "train.max_iters=1",
        "train.sample_length=5"]
try:
    charrnn.train([*args, f"hydra.run.dir={runs / 'first'}"])
    print("trained")
except KeyboardInterrupt as e:
    print(f"KeyboardInterrupt: {e}")
import torch
print(tuple(torch.nn.Linear(2, 3)(torch.ones(1, 2)).shape))
print(charrnn.train([*args, f"hydra.run.dir={runs / 'second'}"]).steps, sorted(p.name for p in runs.iterdir()))
'''


@pytest.mark.slow  # imports torch and trains twice in a fresh interpreter: about 20 s on the 2-core host
def test_a_ctrl_c_as_train_starts_raises_keyboard_interrupt_and_leaves_torch_whole(corpus, tmp_path):
    script = tmp_path / "notebook.py"
    script.write_text(INTERRUPTED_IMPORT)
    runs = tmp_path / "runs"
    runs.mkdir()
    [proc] = run_scripts([str(script), str(corpus), str(runs)])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["KeyboardInterrupt: before training began; nothing was saved", "(1, 3)"], proc.stdout
    assert lines[-1] == "1 ['second']", proc.stdout
