"""Interesting units: which units track simple properties of the text, and whether that is learned.

Each property is a number per symbol of the text, true (1) or false (0) except the position in the
line. A unit's raw score is the Pearson correlation r between its value after reading each symbol and
the property of that symbol. Karpathy, Johnson and Fei-Fei (2015) found LSTM cells that switch on inside
quotes and cells that count along a line; r finds such a unit, with its sign, if one exists.

r alone claims too much. Any unit that reads the input follows what the current symbol says (upper
case, whitespace), even in a network that never trained: its input weights are enough. So each claim
carries two baselines:

    partial r     r between the unit and the property once each is taken relative to its mean over the
                  symbols equal to the current one: what the unit knows beyond the current symbol.
                  A property that the current symbol decides (upper case) has nothing left, and is
                  never called learned.
    untrained     the best |partial r| any unit of the same layer reaches in the same architecture at
                  its initialisation (the run's own seed: this model before its first step).

A unit "tracks" a property (strong) when |partial r| >= STRONG and it beats the untrained network's best
by at least MARGIN. When one unit heads two properties, the pair is named with the correlation the text
gives them: in Tiny Shakespeare the speakers' lines are its all-caps lines, so one unit may head both.
A property the model's vocabulary cannot express (quotes in a corpus without '"') is left out with the
kind of corpus that would show it; one the vocabulary has but the text lacks is "not in this text".
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

STRONG = 0.5     # |partial r| from here on is a claim ...
MARGIN = 0.2     # ... when it also beats the untrained network's best |partial r| by this much
OPENING, CLOSING = "([{", ")]}"
SPEAKER_LINE = re.compile(r"[A-Z][A-Za-z' .,-]{0,40}:")   # Tiny Shakespeare's "First Citizen:" on a line of its own


def inside_quotes(chars: list[str]) -> np.ndarray:
    """1 from an opening double quote (or “) up to the symbol before its closing one."""
    out, inside = np.zeros(len(chars)), False
    for t, c in enumerate(chars):
        if c == '"':
            inside = not inside
        elif c in "“”":
            inside = c == "“"
        out[t] = inside
    return out


def inside_brackets(chars: list[str]) -> np.ndarray:
    """1 from an opening bracket or parenthesis up to the symbol before the one that closes it."""
    out, depth = np.zeros(len(chars)), 0
    for t, c in enumerate(chars):
        if c in OPENING:
            depth += 1
        elif c in CLOSING:
            depth = max(0, depth - 1)
        out[t] = depth > 0
    return out


def position_in_line(chars: list[str]) -> np.ndarray:
    """0 for a line's first symbol, 1 for its second, ...; a newline counts as its line's last symbol."""
    out, column = np.zeros(len(chars)), 0
    for t, c in enumerate(chars):
        out[t] = column
        column = 0 if c == "\n" else column + 1
    return out


def line_start(chars: list[str]) -> np.ndarray:
    return (position_in_line(chars) == 0).astype(float)


def upper_case(chars: list[str]) -> np.ndarray:
    return np.array([c.isupper() for c in chars], float)


def whitespace(chars: list[str]) -> np.ndarray:
    return np.array([c.isspace() for c in chars], float)


def speaker_line(chars: list[str]) -> np.ndarray:
    """1 on every symbol of a line that is a speaker's name and a colon alone, after a blank line (or at
    the start), newline included: how Tiny Shakespeare marks who speaks."""
    out = np.zeros(len(chars))
    start, previous_blank = 0, True
    for t, c in enumerate([*chars, "\n"]):
        if c == "\n":
            line = "".join(chars[start:t])
            if previous_blank and SPEAKER_LINE.fullmatch(line):
                out[start:t + 1] = 1
            start, previous_blank = t + 1, not line.strip()
    return out[:len(chars)]




@dataclass(frozen=True)
class Property:
    measure: Callable[[list[str]], np.ndarray]
    expressible: Callable[[set[str]], bool]   # by a vocabulary (the set of its symbols)
    shown_by: str                             # what the page says when the vocabulary cannot express it


def _has(characters: str) -> Callable[[set[str]], bool]:
    return lambda vocab: any(c in vocab for c in characters)


def _has_upper(vocab: set[str]) -> bool:
    return any(c.isupper() for c in vocab)


PROPERTIES = {
    "inside quotes": Property(inside_quotes, _has('"“'),
                              'its vocabulary has no " or “: a corpus with quoted speech (a novel) would show it'),
    "inside brackets or parentheses": Property(
        inside_brackets, _has(OPENING), "its vocabulary has no bracket: source code or Wikipedia markup would show it"),
    "position in the line": Property(position_in_line, _has("\n"),
                                     "its vocabulary has no newline: a text with lines (verse, code) would show it"),
    "start of a line": Property(line_start, _has("\n"),
                                "its vocabulary has no newline: a text with lines (verse, code) would show it"),
    "upper case": Property(upper_case, _has_upper,
                           "its vocabulary has no upper-case letter: a text with capitals would show it"),
    "whitespace": Property(whitespace, lambda vocab: any(c.isspace() for c in vocab),
                           "its vocabulary has no whitespace"),
    "a speaker's-name line (NAME: alone)": Property(
        speaker_line, lambda vocab: ":" in vocab and "\n" in vocab and _has_upper(vocab),
        "its vocabulary lacks ':', a newline or capitals: a play (Tiny Shakespeare) would show it"),
}


@dataclass
class Match:
    quantity: str
    unit: int
    r: float
    partial: float | None   # r beyond the current symbol; None where the current symbol decides the property


@dataclass
class Ranking:
    prop: str
    present: bool            # False: the property is constant over the text, nothing can track it
    of_current_symbol: bool  # the current symbol decides it: any unit reading the input follows it
    best: list[Match]        # strongest first: by |partial r|, or by |r| where there is no partial r
    untrained: float         # the same measure's best over the untrained network's layer
    strong: bool             # best[0] is a claim: see the module's docstring
    shared: list[tuple[str, float]] = field(default_factory=list)   # other properties best[0]'s unit heads, and
                                                                     # the correlation of the two over the text


def correlations(values: np.ndarray, props: np.ndarray) -> np.ndarray:
    """Pearson r (P, N) of each column of props (T, P) with each column of values (T, N); 0 where either
    is constant. Both are centred first, so a saturated unit's tiny spread is measured, not cancelled."""
    p = props - props.mean(axis=0)
    v = values - values.mean(axis=0)
    spread = np.sqrt(np.einsum("tp,tp->p", p, p))[:, None] * np.sqrt(np.einsum("tn,tn->n", v, v))[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p.T @ v) / spread                                                    # (P, N)
    return np.where(spread > 0, r, 0.0)


def beyond_current_symbol(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(T, N) x less its mean over the rows whose symbol is the same as the row's: x_t - mean(x_s : id_s = id_t)."""
    symbols, of_row, counts = np.unique(ids, return_inverse=True, return_counts=True)
    order = np.argsort(of_row, kind="stable")                              # the rows, grouped by symbol
    sums = np.add.reduceat(x[order], np.concatenate([[0], np.cumsum(counts)[:-1]]), axis=0)   # (U, N)
    rest = x - (sums / counts[:, None])[of_row]
    # rounding's residue is no knowledge: a column the current symbol decides becomes exactly constant
    rest[:, np.abs(rest).max(axis=0) <= 1e-9 * np.abs(x).max(axis=0)] = 0
    return rest


def properties(chars: list[str]) -> np.ndarray:
    """(T, P) every property of PROPERTIES at each symbol."""
    return np.stack([p.measure(chars) for p in PROPERTIES.values()], axis=1)


def _flat(layer: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(list(layer.values()), axis=1).astype(np.float64)   # (T, Q*H)


def rank_units(layer: dict[str, np.ndarray], untrained: dict[str, np.ndarray], chars: list[str], ids: np.ndarray,
               top: int = 3) -> list[Ranking]:
    """For each property, the layer's `top` units (of every quantity) that track it best, the untrained
    layer's best figure beside them, and the other properties the first unit heads."""
    names, H = list(layer), next(iter(layer.values())).shape[1]
    props = properties(chars)                                                  # (T, P)
    props_beyond = beyond_current_symbol(props, ids)
    decided = np.abs(props_beyond).max(axis=0) < 1e-9                          # (P,) the current symbol decides it
    values, values_untrained = _flat(layer), _flat(untrained)
    r_all = correlations(values, props)                                        # (P, Q*H)
    partial_all = correlations(beyond_current_symbol(values, ids), props_beyond)
    r_untrained = correlations(values_untrained, props)
    partial_untrained = correlations(beyond_current_symbol(values_untrained, ids), props_beyond)
    rankings = []
    for k, prop in enumerate(PROPERTIES):
        if np.ptp(props[:, k]) == 0:
            rankings.append(Ranking(prop, False, bool(decided[k]), [], 0.0, False))
            continue
        score, baseline = (r_all[k], r_untrained[k]) if decided[k] else (partial_all[k], partial_untrained[k])
        order = np.argsort(-np.abs(score), kind="stable")[:top]
        best = [Match(names[i // H], int(i % H), float(r_all[k, i]), None if decided[k] else float(partial_all[k, i]))
                for i in order]
        untrained_best = float(np.abs(baseline).max())
        strong = (not decided[k] and abs(best[0].partial) >= STRONG
                  and abs(best[0].partial) >= untrained_best + MARGIN)
        rankings.append(Ranking(prop, True, bool(decided[k]), best, untrained_best, strong))
    _name_shared(rankings, props)
    return rankings


def _name_shared(rankings: list[Ranking], props: np.ndarray) -> None:
    """Give each ranking the other properties headed by the same unit (its index: an LSTM's c 213 and f 213
    are one unit) with |r| >= STRONG for both, and the two properties' correlation over the text."""
    between = correlations(props, props)                                       # (P, P)
    heads = [r.best[0] if r.best and abs(r.best[0].r) >= STRONG else None for r in rankings]
    for a, first in enumerate(rankings):
        for b, second in enumerate(rankings):
            if a != b and heads[a] and heads[b] and heads[a].unit == heads[b].unit:
                first.shared.append((second.prop, float(between[a, b])))
