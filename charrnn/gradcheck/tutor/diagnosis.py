"""Which classic mistakes explain the learner's gradients: hypotheses tried against their numbers.

A hypothesis is the backward of mistakes.py with at most two of its switches on (codes.py names
them). On top of it, each gradient may carry a one-gradient mistake (h-index, not-accumulated), and
all of them one common factor (sign, loss-scale) or a clip. An explanation must reproduce every
gradient the learner returned, on every random problem, to MATCH; the one with the fewest codes
wins. When every weight is explained and only the carried state's gradient is not, that is
state-gradient. When nothing explains the numbers the answer is unknown: no guess.
"""

from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from charrnn.gradcheck.tutor.codes import VARIANTS
from charrnn.gradcheck.tutor.mistakes import SWITCHES, Canon, allowed, backward
from charrnn.gradcheck.problem import relative_error

MATCH = 1e-8        # a hypothesis reproduces a gradient to this relative error (round-off is ~1e-15)
SAME_FACTOR = 1e-6  # two fitted factors are one when this close, relative


@dataclass
class Finding:
    code: str
    detail: str = ""          # the variant, the factor, in words
    grads: tuple = ()         # the learner's gradients it changes


@dataclass
class Hypothesis:
    switches: tuple           # mistakes.py's switches that are on
    options: list             # per problem: {gradient: {option: array}}; option "" is the backward's own


def learner_options(shape, result, case) -> dict:
    """The gradients a switched backward gives, in the learner's layout, with each one-gradient variant."""
    options = {g: {"": a} for g, a in shape.from_canon(result.grads).items()}
    for g, a in shape.from_canon(result.variants["h-index"]).items():
        options[g]["h-index"] = a
    for g in shape.weight_grads():
        if g in options:
            options[g]["zero"] = np.zeros_like(options[g][""])
    if case.sizes.get("T", 1) > 1:
        for g, a in shape.from_canon(result.variants["first-step-wrap"]).items():
            options[g]["first-step-wrap"] = a
        for label, t in (("first", 0), ("last", -1)):
            for g, a in shape.from_canon({k: v[t] for k, v in result.terms.items()}).items():
                options[g][f"not-accumulated:{label}"] = a
    return options


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(relative_error(x[g], y[g]) <= MATCH for x, y in zip(a, b) for g in x)


def hypotheses(shape, cases: list, exact_grads: list[dict]):
    """Every hypothesis worth trying: no switch, each switch, each allowed pair; a switch or pair that
    changes nothing on these problems (missing-dh-next in one step) is left out."""
    canons = [shape.canon(case) for case in cases]
    if any(canon is None for canon in canons):   # a cell with no switches (the GRU): the exact gradients only
        yield Hypothesis((), [{g: {"": e[g]} for g in shape.grads} for e in exact_grads])
        return
    cell = canons[0].cell
    switches = list(SWITCHES[cell])
    combos = [()] + [(s,) for s in switches] + [p for p in combinations(switches, 2) if allowed(cell, p)]
    own = {}
    for combo in combos:
        options = [learner_options(shape, backward(canon, combo), case) for canon, case in zip(canons, cases)]
        own[combo] = [{g: o[""] for g, o in per_case.items()} for per_case in options]
        parts = [()] if len(combo) == 1 else [(s,) for s in combo]
        if combo and any(part in own and _same(own[combo], own[part]) for part in parts):
            continue
        yield Hypothesis(combo, options)


def _ratios(yours: list, option: list) -> list | None:
    """Per problem the factor k with yours = k * option (None: any factor, both zero), or None if no k fits."""
    ks = []
    for y, o in zip(yours, option):
        oo = float(np.vdot(o, o))
        if oo == 0.0:
            if np.any(y):
                return None
            ks.append(None)
            continue
        k = float(np.vdot(y, o)) / oo
        if relative_error(y, k * o) > MATCH:
            return None
        ks.append(k)
    return ks


def _fits(ks: list, factors: list) -> bool:
    return all(k is None or abs(k - f) <= SAME_FACTOR * abs(f) for k, f in zip(ks, factors))


def scale_findings(shape, cases, yours: list[dict], factors: list) -> list[Finding] | None:
    """sign / loss-scale / clipped (by norm) for one common factor per problem, or None if it is none of them."""
    if _fits(factors, [1.0] * len(factors)):
        return []
    findings = []
    if all(f < 0 for f in factors):
        findings.append(Finding("sign", "every gradient is minus the exact one"))
        factors = [-f for f in factors]
    if _fits(factors, [1.0] * len(factors)):
        return findings
    if any(f <= 0 for f in factors):
        return None
    for name in shape.scale_names(cases[0].sizes):
        named = [shape.scale_names(case.sizes).get(name) for case in cases]
        if None not in named and _fits(factors, named):
            return findings + [Finding("loss-scale", f"every gradient is {name} times the exact one")]
    if _fits(factors, [factors[0]] * len(factors)):
        return findings + [Finding("loss-scale", f"every gradient is {factors[0]:.6g} times the exact one")]
    cut = [float(np.sqrt(sum(np.sum(v ** 2) for v in y.values()))) for y, f in zip(yours, factors) if f < 1]
    if not findings and all(f <= 1 + SAME_FACTOR for f in factors) and np.ptp(cut) <= SAME_FACTOR * cut[0]:
        return [Finding("clipped", f"scaled down to a global norm of {cut[0]:.4g} where theirs is larger")]
    return None


def _local_findings(shape, choice: dict) -> list[Finding]:
    findings = []
    hidx = tuple(g for g, opt in choice.items() if opt == "h-index")
    if hidx:
        findings.append(Finding("h-index", "; ".join(
            f"{g}: h_{{t-1}} where h_t belongs" if shape.roles[shape.grads[g]] == "Why"
            else f"{g}: h_t where h_{{t-1}} belongs" for g in hidx), hidx))
    wrapped = tuple(g for g, opt in choice.items() if opt == "first-step-wrap")
    if wrapped:
        findings.append(Finding("first-step-wrap", f"{', '.join(wrapped)}: step 0 used the chunk's last h where the "
                                                   f"h before it (hprev) belongs", wrapped))
    zero = tuple(g for g, opt in choice.items() if opt == "zero")
    if zero:
        findings.append(Finding("zero-gradient", f"{', '.join(zero)}: all zeros", zero))
    for label, words in (("first", "step 0's term alone (the last one a reversed loop writes)"),
                         ("last", "the last step's term alone")):
        grads = tuple(g for g, opt in choice.items() if opt == f"not-accumulated:{label}")
        if grads:
            findings.append(Finding("not-accumulated", f"{', '.join(grads)}: {words}", grads))
    return findings


def _switch_findings(shape, hypothesis: Hypothesis, exact_grads: list[dict]) -> list[Finding]:
    changed = tuple(g for g in shape.grads
                    if any(relative_error(o[g][""], e[g]) > MATCH for o, e in zip(hypothesis.options, exact_grads)))
    codes = {}
    for code, variant in hypothesis.switches:
        codes.setdefault(code, []).append(VARIANTS.get(variant, ""))
    return [Finding(code, "; ".join(v for v in variants if v), changed) for code, variants in codes.items()]


def _elementwise_clip(yours: list[dict], options: dict) -> dict | None:
    """{gradient: option} if every gradient is np.clip of an option at one bar, clipped somewhere."""
    bars = [max(float(np.max(np.abs(v))) for v in y.values()) for y in yours]
    choice, bit = {}, []
    for g, by_option in options.items():
        for opt, arrays in by_option.items():
            if all(relative_error(y[g], np.clip(o, -b, b)) <= MATCH for y, o, b in zip(yours, arrays, bars)):
                choice[g] = opt
                bit += [b for o, b in zip(arrays, bars) if np.max(np.abs(o)) > b * (1 + SAME_FACTOR)]
                break
        else:
            return None
    return choice if bit and np.ptp(bit) <= SAME_FACTOR * bit[0] else None


def explanations(shape, cases, yours: list[dict], hypothesis: Hypothesis, exact_grads: list[dict]):
    """Every way this hypothesis reproduces all of the learner's gradients, as lists of findings."""
    grads = list(shape.grads)
    options = {g: {opt: [per_case[g][opt] for per_case in hypothesis.options] for opt in hypothesis.options[0][g]}
               for g in grads}
    viable = {g: [(opt, ks) for opt, arrays in options[g].items()
                  if (ks := _ratios([y[g] for y in yours], arrays)) is not None] for g in grads}
    candidates = [[1.0] * len(cases)]
    for g in grads:
        for _, ks in viable[g]:
            if None not in ks and all(abs(k) > 1e-12 for k in ks) and not any(_fits(ks, c) for c in candidates):
                candidates.append(ks)
    switch_findings = _switch_findings(shape, hypothesis, exact_grads)
    for factors in candidates:
        choice = {}
        for g in grads:
            for opt, ks in viable[g]:
                if _fits(ks, factors):
                    choice[g] = opt
                    break
        missing = tuple(g for g in grads if g not in choice)
        scale = scale_findings(shape, cases, yours, factors)
        if scale is None or missing and not set(missing) <= set(shape.state_grads()):
            continue
        state = [Finding("state-gradient", f"{', '.join(missing)} wrong while every weight is right", missing)] \
            if missing else []
        yield switch_findings + _local_findings(shape, choice) + scale + state
    clipped = _elementwise_clip(yours, options)
    if clipped is not None:
        bar = max(float(np.max(np.abs(v))) for y in yours for v in y.values())
        cut = Finding("clipped", f"every entry cut to +-{bar:.4g}")
        yield switch_findings + _local_findings(shape, clipped) + [cut]


def diagnose(shape, cases, yours: list[dict], exact_grads: list[dict]) -> list[Finding]:
    """The smallest explanation, or [unknown]: the fewest codes; then one that reproduces every
    gradient over one that leaves the state's unexplained (state-gradient says less); then the fewest
    switches. yours and exact_grads: per problem, the gradients by name."""
    best, best_cost = None, None
    for hypothesis in hypotheses(shape, cases, exact_grads):
        for findings in explanations(shape, cases, yours, hypothesis, exact_grads):
            codes = {f.code for f in findings}
            cost = (len(codes), "state-gradient" in codes, len(hypothesis.switches), len(findings))
            if best_cost is None or cost < best_cost:
                best, best_cost = findings, cost
    if best:
        return best
    per_stream = clipped_per_stream(shape, cases, yours)
    return [per_stream] if per_stream else [Finding("unknown")]


def _stream(canon: Canon, b: int) -> Canon:
    """Stream b of a problem alone, with the loss's scale unchanged (its gradients sum to the whole's)."""
    one = slice(b, b + 1)
    return replace(canon, x=canon.x[:, one], state=tuple(s[one] for s in canon.state),
                   targets=None if canon.targets is None else canon.targets[:, one],
                   dh=None if canon.dh is None else canon.dh[:, one], dc=None if canon.dc is None else canon.dc[one])


def clipped_per_stream(shape, cases, yours: list[dict]) -> Finding | None:
    """Each stream's gradient clipped to one norm on its own before the streams are summed: yours is
    sum_b min(1, c / |g_b|) g_b, with g_b stream b's exact gradient, one bar c for the streams of a
    problem, and some stream cut. The norm is of all the weights' gradients together, or of each alone."""
    weights = shape.weight_grads()
    canons = [shape.canon(case) for case in cases]
    if any(c is None for c in canons) or canons[0].x.shape[1] < 2:
        return None
    streams = [[shape.from_canon(backward(_stream(c, b)).grads) for b in range(c.x.shape[1])] for c in canons]
    for groups in ([weights], [[g] for g in weights]):
        bars, fits = [], True                         # per problem, the norms its cut streams were cut to
        for y, per_stream in zip(yours, streams):
            bars.append([])
            for group in groups:
                G = np.stack([np.concatenate([s[g].ravel() for g in group]) for s in per_stream], axis=1)
                target = np.concatenate([y[g].ravel() for g in group])
                f, *_ = np.linalg.lstsq(G, target, rcond=None)
                if relative_error(G @ f, target) > MATCH or np.any(f > 1 + SAME_FACTOR) or np.any(f <= 0):
                    fits = False
                    break
                bars[-1] += [float(fb * n) for fb, n in zip(f, np.linalg.norm(G, axis=0)) if fb < 1 - SAME_FACTOR]
            if not fits:
                break
        # one bar within each problem (a bar in summed units is another in the mean's on another problem)
        if fits and any(bars) and all(np.ptp(b) <= SAME_FACTOR * b[0] for b in bars if b):
            which = "all the weights' gradients together" if len(groups) == 1 else "each weight's gradient"
            first = next(b[0] for b in bars if b)
            return Finding("clipped-per-stream", f"each stream's gradient cut on its own ({which}; to a norm of "
                                                 f"{first:.4g} on the first problem that cuts one) before the "
                                                 f"streams are added up")
    return None
