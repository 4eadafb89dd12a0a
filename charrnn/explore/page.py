"""The explorer's page: one self-contained HTML file (page.html: inline CSS and script, no network),
its data embedded.

Every unit's value at every symbol is embedded, so the page can show any unit: as one of 63 levels
over the quantity's range, one letter of ALPHABET per value (a level is 1/31 of the way from 0 to 1 in
(-1, 1), 1/62 in (0, 1): finer than the colours tell apart). Each (layer, quantity) is one string in a
<script type="text/plain"> block, unit after unit, read only when that quantity is first shown. The
LSTM's c is unbounded and heavy-tailed: each unit's levels span +-its 99th percentile of |c| (at least 1,
kept in `scales`), and the values beyond it are kept exactly (`beyond`), so a unit with a few values of 30
still shows its ordinary range in colour and the hover tells the outliers as they are. The rest (the
text as ids, the losses, the top guesses, the look-back sizes, the unit ranking and its baselines) is one
JSON block.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from charrnn.cells import CELLS, Quantity
from charrnn.data import Vocab
from charrnn.errors import UserError
from charrnn.explore.lookback import lookback
from charrnn.explore.output import GENERATOR, write_page
from charrnn.explore.trace import Trace, losses, top_k, trace
from charrnn.explore.units import MARGIN, PROPERTIES, STRONG, Ranking, rank_units
from charrnn.model import ModelSpec

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+"   # nothing HTML or JSON escapes
LEVELS = len(ALPHABET)                    # 63: an odd count, so that 0 of (-1, 1) is a level
CLIP_PERCENTILE = 99      # an unbounded quantity's colour scale per unit (the LSTM's c): this percentile of
                          # its |values|; the values beyond are kept exactly
TOP_K = 5
NOTHING_LEARNED = 0.05    # nats/char: a model within this of its untrained self (or of the character
                          # frequencies alone) has learned nothing (of the text's order)
LOSS_SCALE = 5.0          # nats: surprise's colour is full red here and above (ln 65 = 4.2 is a uniform guess)
DECADES = 4               # the look-back strip's log scale: its tallest bar and 10^4 below
TEMPLATE = Path(__file__).with_name("page.html")


@dataclass
class PageSpec:
    """What the page is about, beyond the weights and the text."""

    about: str                 # one line: the model, the checkpoint, the text
    seq_length: int            # the run's train.seq_length (the look-back strip marks it)
    lookback_positions: int    # the look-back strip is computed for symbols 1 .. this
    lookback_lags: int         # and this many symbols back
    select: int | None = None  # a symbol to select when the page opens
    show: str | None = None    # what the page opens on: "LAYER/QUANTITY/UNIT" or "surprise"; None: strongest_unit


def run_label(checkpoint: Path) -> str:
    """The run's label, as runs/LABEL/DATE_TIME names it (the page's title), else the checkpoint's folder."""
    folder = checkpoint.resolve().parent
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(-\d+)?", folder.name) and folder.parent.name:
        return folder.parent.name
    return folder.name or str(folder)


def symbol_text(vocab: Vocab) -> list[str]:
    """How each symbol shows: the character, or \\xNN for a control character or a byte outside ASCII."""
    shown = []
    for s in map(int, vocab.symbols):
        printable = s in (9, 10) or (32 <= s < 127) or (not vocab.is_bytes and s >= 0xA0)
        shown.append(chr(s) if printable else f"\\x{s:02x}")
    return shown


def quantize(values: np.ndarray, lo: float, hi: float) -> str:
    """(T, H) values -> H*T letters of ALPHABET, unit after unit."""
    levels = np.rint((np.clip(values, lo, hi) - lo) / (hi - lo) * (LEVELS - 1)).astype(np.intp)
    return np.frombuffer(ALPHABET.encode(), np.uint8)[levels.T].tobytes().decode("ascii")


def dequantize(letters: str, T: int, lo: float, hi: float) -> np.ndarray:
    """quantize's inverse, to its resolution: (T, H)."""
    index = np.zeros(128, np.float64)
    index[np.frombuffer(ALPHABET.encode(), np.uint8)] = np.arange(LEVELS)
    levels = index[np.frombuffer(letters.encode(), np.uint8)].reshape(-1, T).T
    return lo + (hi - lo) * levels / (LEVELS - 1)


def page_data(params: dict[str, np.ndarray], untrained: dict[str, np.ndarray], spec: ModelSpec, vocab: Vocab,
              ids: np.ndarray, page: PageSpec) -> tuple[dict, dict[str, str]]:
    """The page's JSON and its value blocks (element id -> letters), for the text ids (T,); `untrained` is
    the same architecture's initialisation, the baseline of every claim."""
    quantities = {q.name: q for q in CELLS[spec.cell].quantities}
    start = opening_view(page.show, spec, list(quantities)) if page.show else None
    traced, baseline = trace(params, spec, ids), trace(untrained, spec, ids)
    loss = losses(traced)
    top_ids, top_probs = top_k(traced, TOP_K)
    shown = symbol_text(vocab)
    blocks, scales, beyond = value_blocks(traced, quantities)
    units, found, inexpressible = unit_rankings(traced, baseline, [shown[i] for i in ids], set(shown))
    data = {
        "about": f"{page.about} · mean loss {loss.mean():.3f} nats/char",
        "verdict": verdict(float(loss.mean()), float(losses(baseline).mean()), ids, len(vocab), len(found)),
        "layers": spec.num_layers, "hidden": spec.hidden_size, "quantities": list(traced.layers[0]),
        "about_quantity": {name: q.about for name, q in quantities.items()},
        "ranges": {name: shown_range(q) for name, q in quantities.items()}, "scales": scales,
        "beyond": beyond, "clip_percentile": CLIP_PERCENTILE,
        "alphabet": ALPHABET, "levels": LEVELS, "symbols": shown, "ids": [int(i) for i in ids],
        "loss": [None, *np.round(loss, 3).tolist()], "loss_scale": LOSS_SCALE,
        "top_k": top_ids.shape[1], "top": top_ids.ravel().tolist(),
        "top_p": np.rint(top_probs * 1000).astype(int).ravel().tolist(),
        "lookback": lookback_data(params, spec, traced, page),
        "units": units, "strong": STRONG, "margin": MARGIN, "found": found, "inexpressible": inexpressible,
        "start": start or strongest_unit(units), "select": page.select,
    }
    return data, blocks


def verdict(loss: float, untrained_loss: float, ids: np.ndarray, vocab_size: int, claims: int) -> dict:
    """Whether the model learned anything, from its loss on the text beside two that know nothing: its own
    untrained initialisation's, and the character frequencies' (the text's own, counted over it); `claims`
    is how many units the ranking found tracking a property."""
    counts = np.bincount(ids)
    p = counts[counts > 0] / len(ids)
    unigram = float(-(p * np.log(p)).sum())
    figures = (f"{loss:.2f} nats/char; untrained, this network gives {untrained_loss:.2f}, "
               f"the text's character frequencies alone {unigram:.2f}, a uniform guess {math.log(vocab_size):.2f}")
    if loss >= untrained_loss - NOTHING_LEARNED:
        if claims:
            return {"level": "nothing", "text": f"This model predicts the text no better than its untrained "
                    f"initialisation ({figures}): whatever the units below track, its predictions do not use it."}
        return {"level": "nothing", "text": f"Nothing is learned: this model predicts the text no better than its "
                f"untrained initialisation ({figures}). Its units follow the input through random weights, and "
                f"no correlation below is more than an untrained network of this shape shows."}
    if loss >= unigram - NOTHING_LEARNED:
        return {"level": "frequencies", "text": f"This model has learned at most how often each character occurs, "
                f"nothing of the order of the text ({figures})."}
    return {"level": "learned", "text": f"Loss {figures}."}


def shown_range(quantity: Quantity) -> tuple[float, float]:
    """The range a quantity's colour scale spans: its bounds, or (-1, 1) of its per-unit scale when unbounded."""
    return quantity.bounds or (-1, 1)


def value_blocks(traced: Trace, quantities: dict[str, Quantity]) -> tuple[dict[str, str], list[dict], list[dict]]:
    """Every (layer, quantity)'s values as letters; each layer's per-unit scales of its unbounded quantities
    (the LSTM's c) and the values beyond them, exactly: {quantity: {unit: [t, value, t, value, ...]}}."""
    blocks, scales, beyond = {}, [], []
    for layer, traced_layer in enumerate(traced.layers):
        scales.append({})
        beyond.append({})
        for q, values in traced_layer.items():
            if quantities[q].bounds is None:
                spread = np.percentile(np.abs(values), CLIP_PERCENTILE, axis=0)
                scale = np.maximum(1.0, np.ceil(spread * 100) / 100)                         # (H,)
                scales[layer][q] = scale.tolist()
                outside = {}
                for t, unit in zip(*np.nonzero(np.abs(values) > scale)):
                    outside.setdefault(str(unit), []).extend([int(t), round(float(values[t, unit]), 3)])
                beyond[layer][q] = outside
                values = values / scale
            blocks[f"v-{layer}-{q}"] = quantize(values, *shown_range(quantities[q]))
    return blocks, scales, beyond


def unit_rankings(traced: Trace, baseline: Trace, chars: list[str],
                  vocab: set[str]) -> tuple[list, dict[str, str], list[dict]]:
    """Each layer's ranking (units.rank_units) as JSON, what each strong unit tracks by "layer/q/unit", and
    the properties the vocabulary cannot express, with the kind of corpus that would show them."""
    kept = [prop for prop, p in PROPERTIES.items() if p.expressible(vocab)]
    hidden = [{"property": prop, "why": p.shown_by} for prop, p in PROPERTIES.items() if prop not in kept]
    units, found = [], {}
    for layer, (quantities, untrained) in enumerate(zip(traced.layers, baseline.layers)):
        rankings = [r for r in rank_units(quantities, untrained, chars, traced.ids) if r.prop in kept]
        units.append([ranking_json(r) for r in rankings])
        for r in rankings:
            if r.strong:
                m = r.best[0]
                found.setdefault(f"{layer}/{m.quantity}/{m.unit}", claim(r))
    return units, found, hidden


def ranking_json(r: Ranking) -> dict:
    return {"property": r.prop, "present": r.present, "of_current_symbol": r.of_current_symbol,
            "strong": r.strong, "untrained": round(r.untrained, 3),
            "shared": [{"property": other, "r": round(rho, 3)} for other, rho in r.shared if other != r.prop],
            "best": [{"quantity": m.quantity, "unit": m.unit, "r": round(m.r, 3),
                      "partial": None if m.partial is None else round(m.partial, 3)} for m in r.best]}


def signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "\u2212")


def claim(r: Ranking) -> str:
    """What a strong unit tracks, with its baselines, in one line."""
    m = r.best[0]
    text = (f"tracks {r.prop} (r = {signed(m.r)}; beyond the current character {signed(m.partial)}, "
            f"the untrained network's best {abs(r.untrained):.2f})")
    for other, rho in r.shared:
        text += (f"; it also heads {other}: " + ("this text makes the two alike" if abs(rho) >= STRONG else
                 "a different property in this text") + f" (r = {signed(rho)} between them)")
    return text


def lookback_data(params: dict, spec: ModelSpec, traced: Trace, page: PageSpec) -> dict:
    positions = min(page.lookback_positions, len(traced.ids) - 1)
    sizes = lookback(params, spec, traced, np.arange(1, positions + 1), page.lookback_lags)
    with np.errstate(divide="ignore"):
        logs = np.log10(sizes.astype(np.float64))
    logs = np.where(np.isneginf(logs), -30.0, logs)   # a gradient of exactly 0: far below any strip's floor
    values = [None if math.isnan(v) else round(v, 2) for v in logs.ravel().tolist()]
    return {"positions": positions, "lags": page.lookback_lags, "seq_length": page.seq_length,
            "decades": DECADES, "values": values}


def opening_view(show: str, spec: ModelSpec, quantities: list[str]) -> dict:
    """show= as the page's opening view, or a UserError saying what it may be."""
    if show == "surprise":
        return {"layer": spec.num_layers - 1, "quantity": "h", "unit": 0, "mode": "surprise"}
    found = re.fullmatch(r"(\d+)/(\w+)/(\d+)", show)
    if not found or int(found[1]) >= spec.num_layers or found[2] not in quantities or int(found[3]) >= spec.hidden_size:
        raise UserError(f"show={show} is not LAYER/QUANTITY/UNIT or surprise; this model has layers 0-"
                        f"{spec.num_layers - 1}, quantities {', '.join(quantities)} and units 0-{spec.hidden_size - 1}, "
                        f"e.g. show={spec.num_layers - 1}/h/0")
    return {"layer": int(found[1]), "quantity": found[2], "unit": int(found[3]), "mode": "unit"}


def strongest_unit(units: list) -> dict:
    """The unit the page opens on: the strongest claim (largest |partial r| among strong units), else the
    top unit of the first property that needs memory, else unit 0 of the top layer."""
    claims = [(abs(r["best"][0]["partial"]), layer, r["best"][0]) for layer, rankings in enumerate(units)
              for r in rankings if r["strong"]]
    candidates = claims or [(0.0, layer, r["best"][0]) for layer, rankings in enumerate(units) for r in rankings
                            if r["present"] and not r["of_current_symbol"]][:1]
    if not candidates:
        return {"layer": len(units) - 1, "quantity": "h", "unit": 0, "mode": "unit"}
    _, layer, m = max(candidates, key=lambda c: c[0])
    return {"layer": layer, "quantity": m["quantity"], "unit": m["unit"], "mode": "unit"}


def render(title: str, data: dict, blocks: dict[str, str]) -> str:
    """The page's HTML."""
    html = TEMPLATE.read_text(encoding="utf-8")
    # "<" escaped inside the JSON, so that no text of the corpus can end the script block
    meta = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    values = "\n".join(f'<script type="text/plain" id="{key}">{letters}</script>' for key, letters in blocks.items())
    filled = {"TITLE": title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
              "GENERATOR": GENERATOR, "META": meta, "VALUES": values}
    # one pass, so that nothing filled in (the corpus's text) is searched for markers again
    return re.sub(r"__(TITLE|GENERATOR|META|VALUES)__", lambda m: filled[m.group(1)], html)


def build_page(params: dict[str, np.ndarray], untrained: dict[str, np.ndarray], spec: ModelSpec, vocab: Vocab,
               ids: np.ndarray, page: PageSpec, title: str, path: Path) -> Path:
    """Write the page for the text ids to path; returns path."""
    # One BLAS thread: its products are one stream's or a few hundred's, and on the busy 2-core host two
    # threads made the page 3.5x slower (docs/explore.md).
    with threadpool_limits(limits=1, user_api="blas"):
        data, blocks = page_data(params, untrained, spec, vocab, ids, page)
    write_page(path, render(title, data, blocks))
    return path
