"""The per-step picture: each time step's share of a weight's gradient, the learner's beside the exact.

Exact (exact.exact_terms): E[s, t] = dl_s/dW_t, the gradient of step s's loss for a copy of W that
only step t uses. Step t's term of the gradient is sum_s E[s, t]; k = s - t is how many steps back
the gradient travelled to get there.

The learner's code returns totals only, so their terms are inferred by running it on windows of the
chunk. Window [t0, s] holds steps t0..s and starts from the exact state after step t0-1 (the state
the whole chunk has there), so every value in it is the chunk's own:

    D(t0, s) = sum_{t0 <= t <= s} (their dl_s/dW_t)      the gradient of step s's loss alone
             = their gradient on [t0, s], where only the last step has a loss (CS231n: dh is zero
               elsewhere), or G(t0, s) - G(t0, s-1) where every step has one (min-char-rnn, charrnn);
               a window's mean loss is first put in the whole chunk's units
    M[s, t]  = D(t, s) - D(t+1, s),  D(s+1, s) = 0       their term at step t of step s's loss

That reads the terms their code computes exactly when it treats a window like the same steps of a
longer chunk, as any backward does that reads only the steps it is given. It takes T(T+1)/2 calls;
where a chunk cannot start from any state (CS231n's lstm_forward starts from c = 0) only the windows
[0, s] exist, and the picture is D(0, s) by loss step s instead.
"""

from dataclasses import dataclass

import numpy as np

from charrnn.gradcheck.problem import relative_error

MAX_STEPS = 8   # the picture's chunk: T(T+1)/2 calls of the learner's code


@dataclass
class Picture:
    """One weight's gradient by time step. split: yours/exact are M/E (T, T, *shape) indexed [s, t];
    otherwise they are D(0, s) (T, *shape), by the loss step s."""

    split: bool
    yours: np.ndarray
    exact: np.ndarray

    def rows(self) -> list[dict]:
        """Per step t (split) or loss step s: the sizes (L2 norms) of the two terms and their relative error."""
        yours, exact = (self.yours.sum(axis=0), self.exact.sum(axis=0)) if self.split else (self.yours, self.exact)
        step = "t" if self.split else "s"
        return [{step: t, "yours": float(np.linalg.norm(a)), "exact": float(np.linalg.norm(b)),
                 "error": relative_error(a, b)} for t, (a, b) in enumerate(zip(yours, exact))]

    def by_distance(self) -> list[dict]:
        """Per k = s - t: the relative error of every term k steps back, and their sizes."""
        if not self.split:
            return []
        T = len(self.yours)
        rows = []
        for k in range(T):
            a = np.stack([self.yours[s, s - k] for s in range(k, T)])
            b = np.stack([self.exact[s, s - k] for s in range(k, T)])
            rows.append({"k": k, "yours": float(np.linalg.norm(a)), "exact": float(np.linalg.norm(b)),
                         "error": relative_error(a, b)})
        return rows


def learner_terms(shape, box, loaded, case, states: list) -> dict[str, np.ndarray]:
    """{weight gradient: M (T, T, *shape)}, or D(0, s) (T, *shape) where the shape cannot carry state."""
    T = case.sizes["T"]
    names = shape.weight_grads()
    D = {g: np.zeros((T + 1, T, *case.arrays[shape.grads[g]].shape)) for g in names}
    for t0 in range(T) if shape.carries_state else [0]:
        previous = {g: 0.0 for g in names}
        for s in range(t0, T):
            got = shape.run(box, loaded, shape.window(case, t0, s, states))
            for g in names:
                total = got[g] * shape.window_scale(t0, s, T)
                D[g][t0, s] = total - previous[g] if shape.window_loss == "all" else total
                previous[g] = total
    if not shape.carries_state:
        return {g: d[0] for g, d in D.items()}
    M = {}
    for g, d in D.items():
        M[g] = np.zeros((T, T, *d.shape[2:]))
        for s in range(T):
            for t in range(s + 1):
                M[g][s, t] = d[t, s] - d[t + 1, s]
    return M


def pictures(shape, box, loaded, case, states: list, exact_terms: dict) -> dict[str, Picture]:
    yours = learner_terms(shape, box, loaded, case, states)
    if shape.carries_state:
        return {g: Picture(True, yours[g], exact_terms[g]) for g in yours}
    return {g: Picture(False, yours[g], exact_terms[g].sum(axis=1)) for g in yours}


def first_step_only(picture: Picture) -> Picture:
    """The picture of a mistake that lives in the first step of whatever chunk the code is given (hs[-1]
    on a list): each window of the inference has a first step of its own, so every step would look
    wrong. Steps t >= 1 are the exact terms, and step 0 holds all that parts each loss step's gradient
    D(0, s) from the exact one: the chunk's own first step is the one that is wrong."""
    if not picture.split:
        return picture
    yours = picture.exact.copy()
    yours[:, 0] += picture.yours.sum(axis=1) - picture.exact.sum(axis=1)
    return Picture(True, yours, picture.exact)
