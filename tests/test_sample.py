import io
import subprocess
import sys

import numpy as np
import pytest

from charrnn.training import loop as trainer
from charrnn import signals
from charrnn.checkpoint import load_checkpoint
from charrnn.config import to_sample_config
from charrnn.errors import UserError
from charrnn.backends.numpy_backend import step_logits
from charrnn.model import model_spec, to_torch, zero_state
from charrnn.generation import next_char_distribution
from charrnn.sampling import SEPARATOR, sample
from tests.conftest import HANG, REPO, TINY, compose_raw, make_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A float64 run that has learned a little of a repetitive corpus."""
    tmp = tmp_path_factory.mktemp("sample")
    corpus = tmp / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 120, encoding="utf-8")
    cfg = make_config([f"data.path={corpus}", *TINY, "model.dtype=float64", "train.max_iters=60", "optim.lr=0.03"])
    return trainer.train(cfg, tmp / "run").run_dir


@pytest.fixture(scope="module")
def lstm_run_dir(tmp_path_factory):
    """The same, with two LSTM layers trained with dropout."""
    tmp = tmp_path_factory.mktemp("sample_lstm")
    corpus = tmp / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 120, encoding="utf-8")
    cfg = make_config([f"data.path={corpus}", *TINY, "model=lstm", "model.hidden_size=16", "model.num_layers=2",
                       "model.dropout=0.1", "model.dtype=float64", "train.max_iters=30", "optim.lr=0.03"])
    return trainer.train(cfg, tmp / "run").run_dir


def sample_text(run_dir, *overrides):
    out = io.StringIO()
    sample(to_sample_config(compose_raw([f"checkpoint={run_dir}", *overrides], config_name="sample")), out)
    return out.getvalue()


def test_same_seed_gives_the_same_text_after_the_echoed_prime(run_dir):
    text = sample_text(run_dir, "length=80", "prime='the '")
    assert text == sample_text(run_dir, "length=80", "prime='the '")
    assert text != sample_text(run_dir, "length=80", "prime='the '", "seed=7")
    assert text.startswith("the ") and len(text) == len("the ") + 80 + 1  # and a final newline


@pytest.mark.parametrize("which", ["run_dir", "lstm_run_dir"])
def test_greedy_text_is_the_most_likely_continuation_by_stock_torch_nn(which, request):
    """The checkpoint's weights in torch.nn.RNN / LSTM (charrnn.model.to_torch) pick the same characters."""
    import torch

    run_dir = request.getfixturevalue(which)
    ckpt = load_checkpoint(run_dir / "ckpt_best.npz")
    model = ckpt.config["model"]
    rnn, head = to_torch(model_spec(model["cell"], len(ckpt.vocab), model["hidden_size"], model["num_layers"]),
                         ckpt.params)
    chars = [chr(c) for c in ckpt.vocab]
    expected, state = "the ", None

    def step(c):
        x = torch.nn.functional.one_hot(torch.tensor([[chars.index(c)]]), len(chars)).double()
        out, new_state = rnn(x, state)
        return head(out)[0, -1], new_state
    with torch.no_grad():
        for c in expected:
            logits, state = step(c)
        for _ in range(30):
            expected += chars[int(torch.argmax(logits))]
            logits, state = step(expected[-1])
    for backend in ("numpy", "torch"):
        assert sample_text(run_dir, "length=30", "prime='the '", "greedy=true", "seed=3",
                           f"backend={backend}", "backend.device=cpu") == expected + "\n"


def test_text_is_written_as_it_is_generated(run_dir, monkeypatch):
    calls = []

    class Terminal(io.StringIO):
        def write(self, s):
            calls.append(("write", s))
            return super().write(s)

        def flush(self):
            calls.append(("flush", None))

    sample(to_sample_config(compose_raw([f"checkpoint={run_dir}", "length=25"], config_name="sample")), Terminal())
    chars = [c for kind, c in calls if kind == "write" and c]
    assert len(chars) >= 25 and all(len(c) == 1 for c in chars[:25])
    # every character is flushed before the next is drawn
    first = calls.index(("write", chars[0]))
    assert all(calls[i + 1] == ("flush", None) for i in range(first, first + 50, 2))


def test_a_ctrl_c_python_dropped_stops_the_sample(run_dir, monkeypatch):
    """A Ctrl-C whose KeyboardInterrupt Python dropped (raised in a weakref callback during an import) is
    raised again before the next character is written, not after length characters."""
    monkeypatch.setattr(signals, "_interrupted", True)  # as quiet_keyboard_interrupt's handler records one
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        sample(to_sample_config(compose_raw([f"checkpoint={run_dir}", "length=1000", "prime=the"],
                                            config_name="sample")), out)
    assert out.getvalue() == "the"


def test_num_samples_are_separated_and_differ(run_dir):
    samples = sample_text(run_dir, "length=40", "num_samples=3", "prime=the").rstrip("\n").split(SEPARATOR)
    assert len(samples) == 3 and len(set(samples)) == 3
    assert all(s.startswith("the") and len(s) == 3 + 40 for s in samples)


def test_prime_outside_the_vocabulary_is_refused_or_skipped(run_dir, capsys):
    with pytest.raises(UserError, match=r"lacks: 'Z', 'é'; remove them, or pass skip_unknown=true"):
        sample_text(run_dir, "prime='Zébra the'")
    text = sample_text(run_dir, "prime='Zébra the'", "skip_unknown=true", "length=5")
    assert text.startswith("bra the") and len(text) == len("bra the") + 5 + 1
    assert "skipping prime characters the checkpoint's vocabulary lacks: 'Z', 'é'" in capsys.readouterr().err


@pytest.mark.parametrize("override,message", [
    ("temperature=0", "temperature must be positive, got 0.0"),
    ("temperature=-1", "temperature must be positive"),
    ("top_p=0", r"top_p must be in \(0, 1\], got 0.0"),
    ("top_p=1.5", r"top_p must be in \(0, 1\]"),
    ("top_k=0", "top_k must be positive"),
    ("length=-1", "length must not be negative"),
    ("num_samples=0", "num_samples must be positive"),
    ("length=ten", "invalid config at length"),
])
def test_bad_sampling_options_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        to_sample_config(compose_raw(["checkpoint=x", override], config_name="sample"))


def test_checkpoint_is_required():
    with pytest.raises(UserError, match="checkpoint=PATH"):
        to_sample_config(compose_raw([], config_name="sample"))


def test_top_k_top_p_and_temperature_cut_the_distribution():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.allclose(next_char_distribution(logits, 1.0, None, None), [0.5, 0.3, 0.15, 0.05])
    assert np.allclose(next_char_distribution(logits, 1.0, 2, None), [0.625, 0.375, 0, 0])
    assert np.allclose(next_char_distribution(logits, 1.0, None, 0.79), [0.625, 0.375, 0, 0])
    assert np.allclose(next_char_distribution(logits, 1.0, None, 0.81), [0.5, 0.3, 0.15, 0] / np.float64(0.95))
    cold = next_char_distribution(logits, 0.5, None, None)
    assert np.allclose(cold, np.array([0.5, 0.3, 0.15, 0.05]) ** 2 / np.sum(np.array([0.5, 0.3, 0.15, 0.05]) ** 2))


def test_torch_backend_samples_a_numpy_checkpoint_to_the_same_text(run_dir):
    pytest.importorskip("charrnn.backends.torch_backend")
    options = ["length=100", "prime='the '", "backend.device=cpu"]
    assert sample_text(run_dir, "backend=torch", *options) == sample_text(run_dir, *options)


def test_sample_py_streams_from_the_command_line(run_dir):
    proc = subprocess.run([sys.executable, "sample.py", f"checkpoint={run_dir}", "length=50", "prime='the '",
                           "num_samples=2"], cwd=REPO, capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == sample_text(run_dir, "length=50", "prime='the '", "num_samples=2")
    assert proc.stderr == ""


def test_a_byte_vocabulary_round_trips_through_the_checkpoint_and_sample_py(tmp_path):
    """A file that is not UTF-8 (Latin-1 lines among UTF-8 ones) trains as bytes; samples come out
    decoded from UTF-8, and a prime goes in as its UTF-8 bytes."""
    raw = ("the café by the fjord ✓\n".encode() + "naïve fiancé\n".encode("latin-1")) * 60
    corpus = tmp_path / "mixed.txt"
    corpus.write_bytes(raw)
    cfg = make_config([f"data.path={corpus}", *TINY, "data.encoding=bytes", "model.dtype=float64",
                       "train.max_iters=40", "optim.lr=0.03"])
    run_dir = trainer.train(cfg, tmp_path / "run").run_dir
    ckpt = load_checkpoint(run_dir / "ckpt_best.npz")
    assert ckpt.config["data"]["encoding"] == "bytes" and list(ckpt.vocab) == sorted(set(raw))

    spec = model_spec("rnn", len(ckpt.vocab), 16)
    symbols, state = list(ckpt.vocab), zero_state(spec, 1, np.float64)
    for byte in "café".encode():
        logits, state = step_logits(ckpt.params, spec, np.array([symbols.index(byte)]), state)
    drawn = []
    for _ in range(60):
        drawn.append(symbols[int(np.argmax(logits[0]))])
        logits, state = step_logits(ckpt.params, spec, np.array([symbols.index(drawn[-1])]), state)
    expected = "café" + bytes(drawn).decode("utf-8", "backslashreplace") + "\n"
    assert sample_text(run_dir, "length=60", "prime='café'", "greedy=true") == expected
    proc = subprocess.run([sys.executable, "sample.py", f"checkpoint={run_dir}", "length=60", "prime='café'",
                           "greedy=true"], cwd=REPO, capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 0 and proc.stdout == expected, proc.stderr
    with pytest.raises(UserError, match="lacks: 'è'"):   # è is c3 a8 in UTF-8: no a8 in the corpus
        sample_text(run_dir, "prime='è'")
