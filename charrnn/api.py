"""charrnn from Python (a notebook): load a trained model and look inside it, or train one.

    import charrnn
    m = charrnn.load("runs/gru_5min/2026-11-24_12-00-00")      # a run directory or a ckpt_*.npz
    print(m.sample(prime="ROMEO:", length=200, temperature=0.8))
    m.score("To be, or not to be").mean                          # nats per character
    m.predict("To be, or not to b", k=3).chars[-1]              # ['e', ...]
    m.trace("To be")[0]["h"]                                     # (5, H): layer 0's h_t
    m.trace(open("hamlet.txt").read()[:2000]).show(1, 80)       # unit 80 of layer 1 over the text, inline
    m.explore(open("hamlet.txt").read()[:5000], "hamlet.html")  # the page of python -m charrnn.explore
    result = charrnn.train(["model=gru", "train.max_iters=500"])  # what python train.py ... runs

Everything reads the model as sample.py, training and evaluation do: one loader
(charrnn.checkpoint.load_model), one sampler (charrnn.generation.continuation), and for what happens
inside, the NumPy layers' forward pass (charrnn.explore.trace), whichever backend loaded the weights.
A mistake (a bad path, a character the vocabulary lacks, a bad option) raises charrnn.errors.UserError
with the same message the scripts print: a UserValueError (a ValueError too) for a wrong value, a
UserTypeError (a TypeError too) for a value of the wrong type.

m.sample() draws a fresh text at each call, as random.random() does; seed=N gives the same text for the
same N, sample.py's text for its seed=N, and m.last_seed is the seed of the latest call's text.
score, predict and explore read a long text in chunks of charrnn.explore.trace.CHUNK characters: their
memory is their result's and one chunk's, whatever the text's length (trace keeps every step, so its
result grows with the text: T x H numbers per quantity and layer).
"""

import contextlib
import html
import importlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import OmegaConf

from charrnn.checkpoint.loaded import LoadedModel, load_model
from charrnn.backends import BACKENDS
from charrnn.devices import DEVICES, resolve_device, valid_device
from charrnn.config import CONF_DIR, BackendConfig, to_sample_config
from charrnn.errors import UserError, UserTypeError, UserValueError
from charrnn.explore.output import check_size, named_path
from charrnn.explore.page import PageSpec, build_page, run_label
from charrnn.explore.trace import stream_losses, stream_top_k, trace
from charrnn.generation import continuation, quiet_overflow
from charrnn.model import init_params

if TYPE_CHECKING:
    from charrnn.training.loop import TrainResult

MAX_DEFAULT_LAGS = 256


@dataclass
class Score:
    losses: np.ndarray   # (T-1,) nats: entry t is -log p(text[t+1] | text[:t+1]); the first character has none
    mean: float          # their mean: what evaluation reports for this text read as one stream

    def __repr__(self) -> str:
        return (f"<Score: {self.mean:.4f} nats per character ({self.mean / np.log(2):.4f} bits) over "
                f"{len(self.losses):,} predicted characters>")


@dataclass
class Predictions:
    chars: list[list[str]]   # T lists of k characters: at t, the likeliest next characters after text[:t+1]
    probs: np.ndarray        # (T, k) their probabilities, each row falling

    SHOWN = 4  # rows a repr shows at each end

    def __repr__(self) -> str:
        rows = [f"  {t:>6}: " + "  ".join(f"{c!r} {p:.2f}" for c, p in zip(chars, probs))
                for t, (chars, probs) in enumerate(zip(self.chars, self.probs))
                if t < self.SHOWN or t >= len(self.chars) - self.SHOWN]
        if len(self.chars) > 2 * self.SHOWN:
            rows.insert(self.SHOWN, "     ...")
        return (f"<Predictions: the {self.probs.shape[1]} likeliest next characters after each of "
                f"{len(self.chars):,} characters\n" + "\n".join(rows) + ">")


class Traced(list):
    """m.trace(text): per layer (0 = the bottom one), each quantity's (T, H) values over the text. A list
    of dicts, as it always was; show(layer, unit) draws one unit over the text (inline in a notebook)."""

    def __init__(self, text: str, layers: list[dict[str, np.ndarray]]):
        super().__init__(layers)
        self.text = text

    def show(self, layer: int, unit: int, quantity: str = "h") -> "UnitView":
        """One unit's values over the text: the text coloured by them (a notebook shows it inline)."""
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < len(self):
            raise UserValueError(f"layer={layer!r} is not one of this model's layers, 0 to {len(self) - 1}")
        if quantity not in self[layer]:
            raise UserValueError(f"quantity={quantity!r} is not one of this cell's: {', '.join(self[layer])}")
        values = self[layer][quantity]
        if not isinstance(unit, int) or isinstance(unit, bool) or not 0 <= unit < values.shape[1]:
            raise UserValueError(f"unit={unit!r} is not one of this layer's units, 0 to {values.shape[1] - 1}")
        return UnitView(self.text, values[:, unit], f"layer {layer} {quantity} {unit}")

    def __repr__(self) -> str:
        names = ", ".join(self[0]) if self else ""
        return (f"<Traced: {len(self)} layer(s) x ({names}), each ({len(self.text):,}, "
                f"{self[0]['h'].shape[1] if self else 0}) over the text; .show(layer, unit) draws one>")


@dataclass
class UnitView:
    """One unit's value at each character of a text; a notebook renders it as the text coloured by the
    value (blue negative, white zero, red positive: the explorer's scale)."""

    text: str
    values: np.ndarray   # (T,) the unit's value after reading each character
    name: str            # "layer 1 h 80"

    @property
    def scale(self) -> float:
        """The value drawn at full colour: the 99th percentile of |value|, so that a few extreme steps
        (an LSTM's c can reach +-30) do not wash out the rest; values beyond it are drawn at full colour."""
        return float(np.percentile(np.abs(self.values), 99)) or 1.0

    def __repr__(self) -> str:
        return (f"<{self.name} over {len(self.text):,} characters: min {self.values.min():+.3f}, "
                f"max {self.values.max():+.3f}, mean {self.values.mean():+.3f}>")

    def _repr_html_(self) -> str:
        scale = self.scale
        cells = []
        for char, value in zip(self.text, self.values.tolist()):
            share = min(abs(value) / scale, 1.0)
            fade = round(255 * (1 - share))
            colour = f"rgb(255,{fade},{fade})" if value > 0 else f"rgb({fade},{fade},255)"
            shown = "\u21b5<br>" if char == "\n" else html.escape(char).replace(" ", "&nbsp;")
            cells.append(f'<span style="background:{colour}" title="{value:+.4f}">{shown}</span>')
        return (f'<div style="font-family:monospace;line-height:1.5">'
                f'<div>{html.escape(self.name)}: blue -{scale:.3g}, white 0, red +{scale:.3g} '
                f'(the 99th percentile of |value|; beyond it, full colour)</div>{"".join(cells)}</div>')


class Model:
    """A trained model: a checkpoint's weights on a backend, its vocabulary and its run's config."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.last_seed: int | None = None  # the seed of the latest sample(): pass it as seed= to draw it again

    @property
    def path(self) -> Path:
        return self.loaded.path

    @property
    def config(self):
        return self.loaded.config

    @property
    def vocab(self) -> str | bytes:
        """The symbols the model reads and writes, in id order: a str of characters, or bytes for a model
        trained on bytes (data.encoding=bytes)."""
        symbols = self.loaded.vocab.symbols
        return bytes(symbols.tolist()) if self.loaded.vocab.is_bytes else "".join(map(chr, symbols.tolist()))

    def __repr__(self) -> str:
        spec = self.loaded.spec
        options = f" ({spec.options_text})" if spec.options_text else ""
        return (f"<charrnn {spec.cell}{options}, {spec.num_layers} x {spec.hidden_size}, {spec.vocab_size} symbols, "
                f"{self.config.backend.name}: {self.path}>")

    def encode(self, text: str) -> np.ndarray:
        """text's symbol ids, or a UserError naming the characters the vocabulary lacks."""
        text = _text(text, "text")
        unknown = self.loaded.vocab.unknown(text)
        if unknown:
            raise UserValueError(f"the text has characters the checkpoint's vocabulary lacks: "
                                 f"{', '.join(map(repr, unknown))}; remove them")
        return self.loaded.vocab.encode(text)

    def sample(self, prime: str = "", length: int = 500, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, greedy: bool = False, seed: int | None = None) -> str:
        """The prime and `length` characters drawn after it: sample.py's text (num_samples=1) for the same
        options, whose defaults these are but for seed: None draws a fresh text at every call (its seed is
        kept in m.last_seed); seed=N gives the same text for the same N, as sample.py seed=N does."""
        prime = _text(prime, "prime")
        for name, value in (("length", length), ("top_k", top_k), ("seed", seed)):
            _whole(value, name, optional=name != "length")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
        options = to_sample_config(OmegaConf.create(dict(
            checkpoint=str(self.path), backend=vars(self.config.backend), length=length, temperature=temperature,
            top_k=top_k, top_p=top_p, greedy=greedy, prime=prime, skip_unknown=False, seed=seed, num_samples=1)))
        self.encode(prime)   # a prime character the vocabulary lacks is named before anything is drawn
        self.last_seed = options.seed
        rng = np.random.default_rng(options.seed)
        with quiet_overflow():
            drawn = continuation(self.loaded.backend, self.loaded.vocab, self.loaded.spec, self.config.model.dtype,
                                 prime, options.length, rng, options.temperature, options.top_k, options.top_p,
                                 options.greedy)
            return prime + "".join(drawn)

    def trace(self, text: str) -> Traced:
        """Every layer's quantities over the text, each (T, H): h, and the LSTM's c, i, f, g, o, the GRU's
        r, z, n, the minGRU's z, cand or the minLSTM's f, i, cand (charrnn.cells); layer 0 is the bottom one.
        Row t is the value after reading text[t], from the zero state. .show(layer, unit, quantity="h") draws
        one unit over the text."""
        ids = self._ids(text)
        return Traced(text, trace(self.loaded.backend.export_params(), self.loaded.spec, ids).layers)

    def score(self, text: str) -> Score:
        """The loss of every character after the first, in nats, read as one stream from the zero state."""
        text = _text(text, "text")
        if len(text) < 2:
            raise UserValueError("score needs a text of at least 2 characters: the first is only read, not predicted")
        loss = stream_losses(self.loaded.backend.export_params(), self.loaded.spec, self._ids(text))
        return Score(losses=loss, mean=float(loss.mean()))

    def predict(self, text: str, k: int = 5) -> Predictions:
        """At every character, the k likeliest next characters and their probabilities."""
        _whole(k, "k")
        if k < 1:
            raise UserValueError(f"k must be positive, got {k}")
        ids, probs = stream_top_k(self.loaded.backend.export_params(), self.loaded.spec, self._ids(text), k)
        symbols = [self.loaded.vocab.decode([i]) for i in range(len(self.loaded.vocab))]
        return Predictions(chars=[[symbols[i] for i in row] for row in ids.tolist()], probs=probs)

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
            about=(f"{spec.cell.upper() if spec.cell != 'rnn' else 'tanh RNN'}"
                   + (f" ({spec.options_text})" if spec.options_text else "")
                   + f", {spec.num_layers} x {spec.hidden_size} "
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

    def _ids(self, text: str) -> np.ndarray:
        ids = self.encode(text)
        if not len(ids):
            raise UserValueError("the text is empty")
        return ids


def _text(value, name: str) -> str:
    if not isinstance(value, str):
        raise UserTypeError(f"{name} must be text (a str), not {type(value).__name__}: {value!r:.40}")
    return value


def _whole(value, name: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise UserTypeError(f"{name} must be a whole number{' or None' if optional else ''}, "
                            f"not {type(value).__name__}: {value!r:.40}")


def load(path: str | os.PathLike, backend: str = "numpy", device: str = "auto") -> Model:
    """The model of a checkpoint file, or of a run directory (its ckpt_best.npz, else ckpt_last.npz), on
    either backend (backend="torch": device "auto", "cpu", "cuda", "cuda:N" or "mps"), in the dtype it was
    trained in."""
    if not isinstance(path, (str, os.PathLike)):
        raise UserTypeError(f"path must be a checkpoint's or a run directory's path (a str or Path), "
                            f"not {type(path).__name__}")
    if not str(path).strip():
        raise UserValueError("path is empty; name a checkpoint (ckpt_*.npz) or a run directory, as in "
                             "charrnn.load(\"runs/latest\")")
    if backend not in BACKENDS:
        raise UserValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if not isinstance(device, str) or not valid_device(device):
        raise UserValueError(f"device={device!r} is not one of {DEVICES}")
    if backend == "numpy":
        if device not in ("auto", "cpu"):
            raise UserValueError(f"device={device!r} needs backend=\"torch\": the NumPy backend runs on the CPU")
        device = "cpu"
    elif device not in ("auto", "cpu"):
        resolve_device(device, key="device")  # a device this machine lacks is named as such, not as the checkpoint's
    return Model(load_model(str(path), BackendConfig(name=backend, device=device)))


def _overrides(overrides) -> list[str]:
    """The overrides as a list of "key=value" strings (one string would be read letter by letter)."""
    example = "charrnn.train([\"model=gru\", \"train.max_iters=500\"])"
    if isinstance(overrides, (str, bytes)):
        raise UserTypeError(f"overrides must be a list of \"key=value\" strings, not one string: {example}")
    try:
        given = list(overrides)
    except TypeError:
        raise UserTypeError(f"overrides must be a list of \"key=value\" strings, not "
                            f"{type(overrides).__name__}: {example}") from None
    wrong = [o for o in given if not isinstance(o, str)]
    if wrong:
        raise UserTypeError(f"each override must be a \"key=value\" string, not {type(wrong[0]).__name__} "
                            f"{wrong[0]!r:.40}: {example}")
    return given


def train(overrides: Sequence[str] = ()) -> "TrainResult":
    """Train as `python train.py OVERRIDES...` does: the same config (conf/, composed by Hydra), the same run
    directory (runs/LABEL/DATE_TIME, or hydra.run.dir=...), the same files in it. Returns the run's
    TrainResult (run_dir, steps, val_loss, best_val_loss, ...); charrnn.load(result.run_dir) loads it.
    Interrupting (Ctrl-C, a notebook's stop) once training has begun saves at the end of the step and returns
    with stopped_by set; before it begins, it raises KeyboardInterrupt, and nothing was written. A Ctrl-C
    while the trainer's modules (torch among them) are imported is held until they are whole, so that the
    next charrnn.train or import torch in the same notebook works."""
    # Imported here: loading a model needs neither the trainer nor Hydra's composition.
    from charrnn.cli import startup_error
    from charrnn.config import Config, compose
    from charrnn.signals import Stopped
    from charrnn.training.rundir import register_resolvers

    if not (CONF_DIR / "train.yaml").is_file():
        raise UserError(f"charrnn.train composes the configs in {CONF_DIR}, which is missing: "
                        f"install charrnn from its source checkout (pip install -e .)")
    overrides = _overrides(overrides)
    with interrupts_held():
        for module in TRAINER_MODULES:
            importlib.import_module(module)
    from charrnn.start import start_run

    register_resolvers()
    try:
        raw = compose("train", overrides, return_hydra_config=True)
    except Exception as e:
        message = startup_error(e, Config, overrides)
        if message is None:
            raise
        raise UserValueError(message) from None
    task = OmegaConf.masked_copy(raw, [key for key in raw if key != "hydra"])
    try:
        return start_run(task, raw.hydra, Path(str(raw.hydra.run.dir).strip()).absolute())[1]
    except Stopped as stopped:
        raise KeyboardInterrupt(f"{signal.Signals(stopped.signum).name} before training began; nothing was "
                                f"saved") from None


# What a run imports on its way to its first step, the slow ones (torch, TensorBoard) among them; imported
# whole before it starts (interrupts_held).
TRAINER_MODULES = ("charrnn.start", "charrnn.training.loop", "torch", "torch.utils.tensorboard",
                   *(module for module, _ in BACKENDS.values()))


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """A Ctrl-C inside is raised as KeyboardInterrupt once the block ends, not where it comes: an import
    interrupted half-way leaves its package half-imported (torch's next import then fails, or crashes).
    Only the main thread receives signals; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt("before training began; nothing was saved")
