"""charrnn from Python (a notebook): load a trained model and look inside it, or train one.

    import charrnn
    m = charrnn.load("runs/gru_5min/2026-11-24_12-00-00")      # a run directory or a ckpt_*.npz
    print(m.sample(prime="ROMEO:", length=200, temperature=0.8))
    m.score("To be, or not to be").mean                          # nats per character
    m.predict("To be, or not to b", k=3).chars[-1]              # ['e', ...]
    m.trace("To be")[0]["h"]                                     # (5, H): layer 0's h_t
    m.explore(open("hamlet.txt").read()[:5000], "hamlet.html")  # the page of python -m charrnn.explore
    result = charrnn.train(["model=gru", "train.max_iters=500"])  # what python train.py ... runs

Everything reads the model as sample.py, training and evaluation do: one loader
(charrnn.checkpoint.load_model), one sampler (charrnn.generation.continuation), and for what happens
inside, the NumPy layers' forward pass (charrnn.explore.trace), whichever backend loaded the weights.
A mistake (a bad path, a character the vocabulary lacks, a bad option) raises charrnn.errors.UserError
with the same message the scripts print.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import OmegaConf

from charrnn.checkpoint.loaded import LoadedModel, load_model
from charrnn.backends import BACKENDS
from charrnn.config import CONF_DIR, BackendConfig, to_sample_config
from charrnn.errors import UserError
from charrnn.explore.output import check_size, named_path
from charrnn.explore.page import PageSpec, build_page, run_label
from charrnn.explore.trace import Trace, losses, top_k, trace
from charrnn.generation import continuation, quiet_overflow
from charrnn.model import init_params

if TYPE_CHECKING:
    from charrnn.training.loop import TrainResult

MAX_DEFAULT_LAGS = 256


@dataclass
class Score:
    losses: np.ndarray   # (T-1,) nats: entry t is -log p(text[t+1] | text[:t+1]); the first character has none
    mean: float          # their mean: what evaluation reports for this text read as one stream


@dataclass
class Predictions:
    chars: list[list[str]]   # T lists of k characters: at t, the likeliest next characters after text[:t+1]
    probs: np.ndarray        # (T, k) their probabilities, each row falling


class Model:
    """A trained model: a checkpoint's weights on a backend, its vocabulary and its run's config."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def config(self):
        return self.loaded.config

    def __repr__(self) -> str:
        spec = self.loaded.spec
        return (f"<charrnn {spec.cell}, {spec.num_layers} x {spec.hidden_size}, {spec.vocab_size} symbols, "
                f"{self.config.backend.name}: {self.path}>")

    def encode(self, text: str) -> np.ndarray:
        """text's symbol ids, or a UserError naming the characters the vocabulary lacks."""
        unknown = self.loaded.vocab.unknown(text)
        if unknown:
            raise UserError(f"the text has characters the checkpoint's vocabulary lacks: "
                            f"{', '.join(map(repr, unknown))}; remove them")
        return self.loaded.vocab.encode(text)

    def sample(self, prime: str = "", length: int = 500, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False, seed: int = 1337) -> str:
        """The prime and `length` characters drawn after it: sample.py's text (num_samples=1) for the same
        options, whose defaults these are."""
        options = to_sample_config(OmegaConf.create(dict(
            checkpoint=str(self.path), backend=vars(self.config.backend), length=length, temperature=temperature,
            top_k=top_k, top_p=top_p, greedy=greedy, prime=prime, skip_unknown=False, seed=seed, num_samples=1)))
        self.encode(prime)   # a prime character the vocabulary lacks is named before anything is drawn
        rng = np.random.default_rng(options.seed)
        with quiet_overflow():
            drawn = continuation(self.loaded.backend, self.loaded.vocab, self.loaded.spec, self.config.model.dtype,
                                 prime, options.length, rng, options.temperature, options.top_k, options.top_p,
                                 options.greedy)
            return prime + "".join(drawn)

    def trace(self, text: str) -> list[dict[str, np.ndarray]]:
        """Every layer's quantities over the text, each (T, H): h, and the LSTM's c, i, f, g, o, the GRU's
        r, z, n, the minGRU's z, cand or the minLSTM's f, i, cand (charrnn.cells); layer 0 is the bottom one. Row t is the value after reading text[t], from the zero state."""
        return self._trace(text).layers

    def score(self, text: str) -> Score:
        """The loss of every character after the first, in nats, read as one stream from the zero state."""
        if len(text) < 2:
            raise UserError("score needs a text of at least 2 characters: the first is only read, not predicted")
        loss = losses(self._trace(text))
        return Score(losses=loss, mean=float(loss.mean()))

    def predict(self, text: str, k: int = 5) -> Predictions:
        """At every character, the k likeliest next characters and their probabilities."""
        if k < 1:
            raise UserError(f"k must be positive, got {k}")
        ids, probs = top_k(self._trace(text), k)
        vocab = self.loaded.vocab
        return Predictions(chars=[[vocab.decode([i]) for i in row] for row in ids.tolist()], probs=probs)

    def explore(self, text: str, path: str | Path, lookback_positions: int = 300, lookback_lags: int | None = None,
                select: int | None = None, show: str | None = None) -> Path:
        """Write the explorer's page (python -m charrnn.explore's, whose defaults these are) for the text to
        path; returns its path. "How far back" is computed for characters 1 .. lookback_positions, each
        lookback_lags back (None: twice the run's train.seq_length, at most 256). The page opens with
        character `select` selected, showing `show` ("LAYER/QUANTITY/UNIT" such as "1/h/80", or "surprise";
        None: the unit that tracks a property best)."""
        return self.explore_ids(self.encode(text), named_path(Path(path), "path="),
                                f"text: {len(text):,} characters given", lookback_positions, lookback_lags, select, show)

    def explore_ids(self, ids: np.ndarray, path: Path, about: str, lookback_positions: int,
                    lookback_lags: int | None, select: int | None, show: str | None) -> Path:
        if len(ids) < 2:
            raise UserError("the page needs a text of at least 2 characters")
        spec, cfg = self.loaded.spec, self.config
        seq_length = cfg.train.seq_length
        state = self.loaded.checkpoint.state
        trained = ", ".join(filter(None, [
            f"step {state['step']:,}" if isinstance(state.get("step"), int) else "",
            f"val {state['val_loss']:.3f} nats/char" if isinstance(state.get("val_loss"), float) else ""]))
        lags = lookback_lags or min(2 * seq_length, MAX_DEFAULT_LAGS, len(ids) - 1)
        check_size(spec, np.dtype(cfg.model.dtype).itemsize, len(ids), min(lookback_positions, len(ids) - 1), lags)
        page = PageSpec(
            about=(f"{spec.cell.upper() if spec.cell != 'rnn' else 'tanh RNN'}, {spec.num_layers} x {spec.hidden_size} "
                   f"units, {spec.vocab_size} symbols · {self.path}" + (f" ({trained})" if trained else "")
                   + f" · {about}"),
            seq_length=seq_length, lookback_positions=lookback_positions, lookback_lags=lags,
            select=None if select is None else min(select, len(ids) - 1), show=show)
        # the baseline of every claim the page makes: this network before its first step
        untrained = init_params(spec, cfg.model.init, cfg.model.init_std, cfg.seed, cfg.model.dtype,
                                cfg.model.forget_bias)
        return build_page(self.loaded.backend.export_params(), untrained, spec, self.loaded.vocab, ids, page,
                          f"{run_label(self.path)} · charrnn explorer", path)

    def validation_ids(self, length: int) -> np.ndarray:
        """The first `length` symbols of the run's validation split (its corpus must be at hand)."""
        _, val_ids = self.loaded.splits("the page's default text", "pass text=FILE, or run where the model was trained")
        return np.array(val_ids[:length])

    def _trace(self, text: str) -> Trace:
        if not text:
            raise UserError("the text is empty")
        return trace(self.loaded.backend.export_params(), self.loaded.spec, self.encode(text))


def load(path: str | Path, backend: str = "numpy", device: str = "auto") -> Model:
    """The model of a checkpoint file, or of a run directory (its ckpt_best.npz, else ckpt_last.npz), on
    either backend (backend="torch": device "auto", "cpu" or "cuda"), in the dtype it was trained in."""
    if backend not in BACKENDS:
        raise UserError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    return Model(load_model(str(path), BackendConfig(name=backend, device="cpu" if backend == "numpy" else device)))


def train(overrides: Sequence[str] = ()) -> "TrainResult":
    """Train as `python train.py OVERRIDES...` does: the same config (conf/, composed by Hydra), the same run
    directory (runs/LABEL/DATE_TIME, or hydra.run.dir=...), the same files in it. Returns the run's
    TrainResult (run_dir, steps, val_loss, best_val_loss, ...); charrnn.load(result.run_dir) loads it.
    Interrupting (Ctrl-C, a notebook's stop) saves at the end of the step and returns with stopped_by set."""
    # Imported here: loading a model needs neither the trainer nor Hydra's composition.
    from charrnn.config import compose
    from charrnn.start import start_run
    from charrnn.training.rundir import register_resolvers

    if not (CONF_DIR / "train.yaml").is_file():
        raise UserError(f"charrnn.train composes the configs in {CONF_DIR}, which is missing: "
                        f"install charrnn from its source checkout (pip install -e .)")
    register_resolvers()
    raw = compose("train", overrides, return_hydra_config=True)
    task = OmegaConf.masked_copy(raw, [key for key in raw if key != "hydra"])
    return start_run(task, raw.hydra, Path(str(raw.hydra.run.dir).strip()).absolute())[1]
