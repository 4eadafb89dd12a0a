"""Interesting units: which units track simple properties of the text, ranked by correlation.

Each property is a number per symbol of the text, true (1) or false (0) except the position in the
line; a unit's score is the Pearson correlation r between its value after reading each symbol and the
property of that symbol. Karpathy, Johnson and Fei-Fei (2015) found LSTM cells that switch on inside
quotes and cells that count along a line; r finds such a unit, with its sign, if one exists. |r| >= STRONG
is called strong; below it the page says that no unit tracks the property. A property that is constant
over the text (no quotes at all) has no correlation, and the page says it is absent.
"""

import re
from dataclasses import dataclass

import numpy as np

STRONG = 0.5
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


PROPERTIES = {
    "inside quotes": inside_quotes,
    "inside brackets or parentheses": inside_brackets,
    "position in the line": position_in_line,
    "start of a line": line_start,
    "upper case": upper_case,
    "whitespace": whitespace,
    "a speaker's-name line (NAME: alone)": speaker_line,
}


@dataclass
class Match:
    quantity: str
    unit: int
    r: float


@dataclass
class Ranking:
    prop: str
    present: bool          # False: the property is constant over the text, nothing can track it
    best: list[Match]      # strongest |r| first
    strong: bool           # best[0] reaches STRONG


def correlations(values: np.ndarray, props: np.ndarray) -> np.ndarray:
    """Pearson r (P, N) of each column of props (T, P) with each column of values (T, N); 0 where either
    is constant. Both are centred first, so a saturated unit's tiny spread is measured, not cancelled."""
    p = props - props.mean(axis=0)
    v = values - values.mean(axis=0)
    spread = np.sqrt(np.einsum("tp,tp->p", p, p))[:, None] * np.sqrt(np.einsum("tn,tn->n", v, v))[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p.T @ v) / spread                                                    # (P, N)
    return np.where(spread > 0, r, 0.0)


def rank_units(layer: dict[str, np.ndarray], chars: list[str], top: int = 3) -> list[Ranking]:
    """For each property, the layer's `top` units (of every quantity) with the largest |r|."""
    names = list(layer)
    values = np.concatenate([layer[q] for q in names], axis=1).astype(np.float64)   # (T, Q*H)
    H = layer[names[0]].shape[1]
    props = np.stack([measure(chars) for measure in PROPERTIES.values()], axis=1)  # (T, P)
    r_all = correlations(values, props)
    rankings = []
    for prop, p, r in zip(PROPERTIES, props.T, r_all):
        if np.ptp(p) == 0:
            rankings.append(Ranking(prop, present=False, best=[], strong=False))
            continue
        order = np.argsort(-np.abs(r), kind="stable")[:top]
        best = [Match(names[i // H], int(i % H), float(r[i])) for i in order]
        rankings.append(Ranking(prop, present=True, best=best, strong=abs(best[0].r) >= STRONG))
    return rankings
