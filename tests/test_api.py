"""charrnn.load / charrnn.train: the Python API agrees with the scripts, the trainer and the backends."""

import inspect
import io
import json

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import charrnn
from charrnn import api
from charrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.config import config_to_dict, to_sample_config
from charrnn.data import StreamBatcher, Vocab
from charrnn.errors import UserError
from charrnn.model import init_params, spec_of, zero_state
from charrnn.sampling import sample
from charrnn.training.evaluation import evaluate
from tests.conftest import REPO, TINY, compose_raw, make_config, run_scripts

# A cell, and a parallel one with the paper's options after a "+" each (charrnn.model): g, residual, rms or
# layer, or off (all three off, as a checkpoint made before they existed has them).
CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm", "mingru+g+residual+rms", "minlstm+g+residual+layer",
         "mingru+off")
BACKENDS = ("numpy", "torch")
TEXT = 'He said "to be (or not) to be".\nROMEO:\nWhat, ho! [Exit]\n'


def model_overrides(case: str) -> list[str]:
    """The config overrides for one of CELLS."""
    cell, *options = case.split("+")
    named = {"g": ["model.activation=g"], "residual": ["model.residual=true"], "rms": ["model.norm=rms"],
             "layer": ["model.norm=layer"], "off": ["model.activation=none", "model.residual=false", "model.norm=none"]}
    return [f"model={cell}", *(override for option in options for override in named[option])]


def tiny_checkpoint(run_dir, cell, dtype="float64", corpus_text=TEXT * 40, scale=3.0, edit=None):
    """A run directory whose ckpt_best.npz holds a 2-layer, 8-unit model of the cell, its weights drawn
    (times `scale`, so that the units swing) rather than trained: nothing here needs a good model."""
    run_dir.mkdir(parents=True)
    corpus = run_dir / "corpus.txt"
    corpus.write_text(corpus_text, encoding="utf-8")
    cfg = make_config([f"data.path={corpus}", *model_overrides(cell), "model.hidden_size=8", "model.num_layers=2",
                       f"model.dtype={dtype}", "train.seq_length=8"])
    vocab = Vocab.from_corpus(np.array([ord(c) for c in corpus_text]), "utf-8")
    spec = spec_of(cfg.model, len(vocab))
    params = {k: v * scale for k, v in init_params(spec, "uniform", 0.01, 7, dtype).items()}
    if edit:
        edit(params, vocab)
    save_checkpoint(run_dir / "ckpt_best.npz", Checkpoint(
        params=params, optimizer_state={}, vocab=vocab.symbols, config=config_to_dict(cfg),
        progress={"step": 0}, state=dict(zip(spec.state_names, zero_state(spec, cfg.train.batch_size, dtype)))))
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return {cell: tiny_checkpoint(root / cell, cell) for cell in CELLS}


def steps(model, text):
    """The backend's own step_logits over text, one character at a time: the logits after each and the
    state after the last."""
    loaded = model.loaded
    state = zero_state(loaded.spec, 1, model.config.model.dtype)
    logits = []
    for i in loaded.vocab.encode(text):
        out, state = loaded.backend.step_logits(np.array([i]), state)
        logits.append(out[0])
    return np.array(logits), state


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_sample_is_sample_py_text_for_the_same_seed(runs, cell, backend):
    m = charrnn.load(runs[cell], backend=backend, device="cpu")
    out = io.StringIO()
    sample(to_sample_config(compose_raw([f"checkpoint={runs[cell]}", "length=60", "prime=ROMEO:", "seed=5",
                                         "temperature=0.8", "top_k=10", f"backend={backend}", "backend.device=cpu"],
                                        config_name="sample")), out)
    text = m.sample(prime="ROMEO:", length=60, temperature=0.8, top_k=10, seed=5)
    assert text == out.getvalue()[:-1] and len(text) == 66
    assert m.sample(prime="ROMEO:", length=60, seed=6) != m.sample(prime="ROMEO:", length=60, seed=5)


@pytest.mark.parametrize("method,script", [("sample", "sample"), ("explore", "explore")])
def test_api_defaults_are_the_scripts_defaults(method, script):
    conf = yaml.safe_load((REPO / "conf" / f"{script}.yaml").read_text())
    signature = inspect.signature(getattr(api.Model, method)).parameters.values()
    defaults = {p.name: p.default for p in signature if p.default is not inspect.Parameter.empty}
    # but sample's seed: a notebook's m.sample() draws a fresh text at each call (seed=None)
    assert defaults.pop("seed", None) is None
    assert defaults and defaults == {k: conf[k] for k in defaults}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_score_mean_is_the_trainers_evaluation_and_predict_a_softmax_of_the_logits(runs, cell, backend):
    m = charrnn.load(runs[cell], backend=backend, device="cpu")
    ids = m.encode(TEXT * 2)
    score = m.score(TEXT * 2)
    val_loss = evaluate(m.loaded.backend, StreamBatcher(ids, 1, m.config.train.seq_length), m.loaded.spec, "float64")
    assert score.losses.shape == (len(ids) - 1,)
    assert score.mean == pytest.approx(val_loss, rel=1e-12)
    logits, _ = steps(m, TEXT)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    predictions = m.predict(TEXT, k=4)
    order = np.argsort(-p, axis=1, kind="stable")[:, :4]
    np.testing.assert_allclose(predictions.probs, np.take_along_axis(p, order, axis=1), rtol=1e-12)
    chars = [chr(c) for c in m.loaded.vocab.symbols]
    assert predictions.chars == [[chars[i] for i in row] for row in order]
    # the loss of each character is -log of its probability after the one before
    np.testing.assert_allclose(score.losses[:len(TEXT) - 1], -np.log(p[np.arange(len(TEXT) - 1), ids[1:len(TEXT)]]),
                               rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
def test_trace_ends_in_the_state_the_backend_carries(runs, cell, backend):
    m = charrnn.load(runs[cell], backend=backend, device="cpu")
    layers = m.trace(TEXT)
    _, state = steps(m, TEXT)
    assert len(layers) == 2 and all(q.shape == (len(TEXT), 8) for layer in layers for q in layer.values())
    for layer, values in enumerate(layers):
        for name, carried in zip(m.loaded.spec.state_names, state):
            np.testing.assert_allclose(values[name][-1], carried[layer, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru", "minlstm"])
def test_trace_gates_are_the_ones_their_cells_equations_name(runs, cell):
    """The gates read off the caches recombine into the cell's state update (a swapped gate would not)."""
    q = charrnn.load(runs[cell]).trace(TEXT)[1]
    h_prev = np.vstack([np.zeros((1, 8)), q["h"][:-1]])
    if cell == "lstm":
        c_prev = np.vstack([np.zeros((1, 8)), q["c"][:-1]])
        np.testing.assert_allclose(q["c"], q["f"] * c_prev + q["i"] * q["g"], atol=1e-14)
        np.testing.assert_allclose(q["h"], q["o"] * np.tanh(q["c"]), atol=1e-14)
        assert q["i"].min() > 0 and q["g"].min() < 0   # i a sigmoid's, g a tanh's
    elif cell == "gru":
        np.testing.assert_allclose(q["h"], (1 - q["z"]) * q["n"] + q["z"] * h_prev, atol=1e-14)
        assert q["z"].min() > 0 and q["n"].min() < 0
    elif cell == "mingru":
        np.testing.assert_allclose(q["h"], (1 - q["z"]) * h_prev + q["z"] * q["cand"], atol=1e-14)
        assert q["z"].min() > 0 and q["cand"].min() < 0
    else:
        total = q["f"] + q["i"]
        np.testing.assert_allclose(q["h"], q["f"] / total * h_prev + q["i"] / total * q["cand"], atol=1e-14)
        assert q["f"].min() > 0 and q["cand"].min() < 0


def test_a_checkpoint_keeps_the_papers_options_and_one_made_without_them_loads_with_them_off(runs, tmp_path):
    """The options travel in the checkpoint's config, and a checkpoint whose config predates them (no keys)
    loads as the cell without them: the same spec and the same scores as one saved with them off."""
    spec = charrnn.load(runs["minlstm+g+residual+layer"]).loaded.spec
    assert (spec.activation, spec.residual, spec.norm) == ("g", True, "layer")
    ckpt = load_checkpoint(runs["mingru+off"] / "ckpt_best.npz")
    assert {k: ckpt.config["model"][k] for k in ("activation", "residual", "norm")} == {
        "activation": "none", "residual": False, "norm": "none"}
    for key in ("activation", "residual", "norm"):
        del ckpt.config["model"][key]
    older = tmp_path / "older"
    older.mkdir()
    save_checkpoint(older / "ckpt_best.npz", ckpt)
    before, now = charrnn.load(older), charrnn.load(runs["mingru+off"])
    assert before.loaded.spec == now.loaded.spec
    np.testing.assert_array_equal(before.score(TEXT).losses, now.score(TEXT).losses)


def test_mistakes_are_user_errors(runs, tmp_path):
    m = charrnn.load(runs["gru"])
    with pytest.raises(UserError, match=r"vocabulary lacks: 'Z'; remove them"):
        m.score("Zed")
    with pytest.raises(UserError, match="at least 2 characters"):
        m.score("H")
    with pytest.raises(UserError, match="temperature must be positive"):
        m.sample(temperature=0)
    with pytest.raises(UserError, match="backend='jax' is not one of numpy, torch"):
        charrnn.load(runs["gru"], backend="jax")
    with pytest.raises(UserError, match="no checkpoint"):
        charrnn.load(tmp_path)


def test_train_runs_what_train_py_runs(corpus, tmp_path, monkeypatch):
    """The same overrides give the same run through charrnn.train and train.py: config, record, losses;
    without hydra.run.dir, the run directory is named as train.py names it."""
    overrides = [f"data.path={corpus}", *TINY, "train.max_iters=20"]
    result = charrnn.train([*overrides, f"hydra.run.dir={tmp_path / 'api'}"])
    [proc] = run_scripts(["train.py", *overrides, f"hydra.run.dir={tmp_path / 'script'}"])
    assert proc.returncode == 0, proc.stderr
    api, script = tmp_path / "api", tmp_path / "script"
    assert result.run_dir == api and result.steps == 20
    api_result = json.loads((api / "result.json").read_text())
    assert api_result == {**json.loads((script / "result.json").read_text()), "train_seconds": result.train_seconds,
                          "run_id": api_result["run_id"]}  # each run its own identity
    # the same config, below the first line, which names each run's identity
    assert (api / "config.yaml").read_text().split("\n", 1)[1] == (script / "config.yaml").read_text().split("\n", 1)[1]
    assert (api / ".hydra" / "overrides.yaml").read_text() == (script / ".hydra" / "overrides.yaml").read_text()
    text = EventAccumulator(str(api), size_guidance={"tensors": 0}).Reload().Tensors("sample/text_summary")
    assert "of the sample's 20-character windows occur in the training text" in \
        text[-1].tensor_proto.string_val[0].decode()
    assert charrnn.load(result.run_dir).score("the quick brown fox").mean < np.log(len(set(corpus.read_text())))
    monkeypatch.chdir(tmp_path)
    named = charrnn.train([f"data.path={corpus}", *TINY, "train.max_iters=1", "name=from_python"])
    assert named.run_dir.parent == tmp_path / "runs" / "from_python"
