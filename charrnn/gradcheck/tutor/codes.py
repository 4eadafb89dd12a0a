"""The table of diagnoses: each classic BPTT mistake's stable code, what the evidence looks like, the
line of math that is right, and that line in each shape's own notation (docs/model.md prints it).

A fix is looked up by "family-cell" (min-char-rnn-rnn, cs231n-lstm, charrnn-rnn, ...), then family.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Code:
    title: str                                  # what is wrong, in one line
    evidence: str                               # what in the numbers shows it
    math: str                                   # the right line of math
    fixes: dict = field(default_factory=dict)   # the right line in each shape's notation

    def fix(self, family: str, cell: str) -> str:
        return self.fixes.get(f"{family}-{cell}", self.fixes.get(family, self.math))


CODES = {
    "missing-dh-next": Code(
        "the gradient from step t+1 is not added into dh_t",
        "each step's loss reaches the weights at its own step only (k = 0 right, nothing from further back), "
        "so the last step, which has no step after it, is right and every earlier one is wrong",
        "dh_t = (the gradient from step t's own output) + dh_next,  dh_next = Whh^T dh_raw_{t+1} from step t+1",
        {"min-char-rnn": "dh = np.dot(Why.T, dy) + dhnext   # with dhnext = np.dot(Whh.T, dhraw) from step t+1",
         "cs231n-rnn": "dx[:, t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev_h, cache[t])",
         "cs231n-lstm": "dx[:, t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = "
                        "lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])",
         "charrnn": "dh_t = Why^T dy_t + dh_next   (rows: dh[t] = dy[t] @ Why + dh_next)",
         "coursera": "gradients = rnn_cell_backward(da[:, :, t] + da_prevt, caches[t])   # lstm: da[:, :, t] + "
                     "da_prevt, dc_prevt"}),
    "tanh-derivative": Code(
        "the tanh derivative is missing, or taken of the wrong quantity",
        "wrong already for each step's own loss (k = 0): the gradient goes through tanh with the wrong slope",
        "tanh'(a) = 1 - tanh(a)^2, and tanh(a_t) is h_t:  dh_raw_t = (1 - h_t^2) * dh_t  "
        "(LSTM: 1 - tanh(c_t)^2 in dc_t, 1 - g^2 in da_g)",
        {"min-char-rnn": "dhraw = (1 - hs[t] * hs[t]) * dh",
         "cs231n-rnn": "dtanh = (1 - next_h ** 2) * dnext_h   # next_h = tanh(a): the derivative is of the output",
         "cs231n-lstm": "dc = dnext_c + dnext_h * o * (1 - np.tanh(next_c) ** 2);  dag = dc * i * (1 - g ** 2)",
         "charrnn-rnn": "dh_raw_t = (1 - h_t^2) * dh_t",
         "coursera-rnn": "dtanh = (1 - a_next ** 2) * da_next   # a_next = tanh(...): the derivative is of the output",
         "coursera-lstm": "dc = dc_next + da_next * ot * (1 - np.tanh(c_next) ** 2);  dcct = dc * it * (1 - cct ** 2)",
         "charrnn-lstm": "dc_t = dh_t * o * (1 - tanh(c_t)^2) + dc_next;  da_g = dc_t * i * (1 - g^2)"}),
    "h-index": Code(
        "the wrong step's h in a weight gradient",
        "only that gradient is wrong; what flows back through time is right",
        "dWhh = sum_t dh_raw_t h_{t-1}^T (the h that went into step t);  dWhy = sum_t dy_t h_t^T (the h that made y_t)",
        {"min-char-rnn": "dWhh += np.dot(dhraw, hs[t-1].T);  dWhy += np.dot(dy, hs[t].T)",
         "cs231n-rnn": "dWh = prev_h.T.dot(dtanh)   # prev_h, the h this step read",
         "cs231n-lstm": "dWh = prev_h.T.dot(da)   # prev_h, the h this step read",
         "charrnn": "dWhh = sum_t dh_raw_t^T h_{t-1}   (rows: dh_raw[t].T @ h[t-1])"}),
    "transposed-whh": Code(
        "Whh where Whh^T belongs when sending the gradient back to h_{t-1}",
        "right for each step's own loss (k = 0), wrong from one step back: the forward multiplied by Whh, so the "
        "backward multiplies by its transpose",
        "dh_next = Whh^T dh_raw_t",
        {"min-char-rnn": "dhnext = np.dot(Whh.T, dhraw)",
         "cs231n": "dprev_h = dtanh.dot(Wh.T)   # the forward computed prev_h.dot(Wh)",
         "charrnn": "dh_next = dh_raw_t @ Whh   (rows; Whh^T dh_raw_t with column vectors)",
         "coursera": "da_prev = np.dot(Waa.T, dtanh)"}),
    "loss-scale": Code(
        "every gradient is off by one constant factor: the loss is summed where it should be averaged, or the reverse",
        "right in direction everywhere, wrong in size by the same factor",
        "the gradient of the loss as the contract defines it",
        {"min-char-rnn": "loss = sum_t -log p_t[target_t]: lossFun sums over the T steps, and so do its gradients "
                         "(dy = p_t - onehot(target_t), not divided by T)",
         "cs231n": "the upstream dh is already the loss's gradient: multiply by nothing",
         "charrnn": "loss = mean over the B*T predictions: dy_t = (p_t - onehot(target_t)) / (B*T)"}),
    "clipped": Code(
        "the gradients are clipped before they are returned",
        "equal to the exact ones wherever those are small, cut where they are large",
        "return the gradient itself; clip it (if at all) in the training loop, after the check",
        {"min-char-rnn": "min-char-rnn clips inside lossFun (np.clip(dparam, -5, 5, out=dparam)): its gradients are "
                         "exact only while every entry is under 5. Clip in the training loop instead, or check on "
                         "a smaller problem"}),
    "clipped-per-stream": Code(
        "each stream's gradient is clipped on its own before the streams are added up",
        "equal to the sum over the streams of each stream's exact gradient, scaled down to one norm where it is "
        "larger: the streams whose gradient is small are exact, the others are cut",
        "the gradient of the loss over all the streams; clip (if at all) the summed gradient, in the training loop",
        {"charrnn": "sum (or average) the streams' gradients first; clip the whole in the training loop, not inside "
                    "the loop over the streams"}),
    "sign": Code(
        "every gradient has the wrong sign",
        "each gradient is exactly minus the exact one",
        "dL/dy_t = p_t - onehot(target_t): the gradient of the loss, not of the log-likelihood",
        {"min-char-rnn": "dy = np.copy(ps[t]); dy[targets[t]] -= 1",
         "cs231n": "return the gradients as computed; the update subtracts them (W -= lr * dW)"}),
    "not-accumulated": Code(
        "= where += belongs: only one step's term survives the loop",
        "the gradient equals one step's term alone (the last one the loop wrote)",
        "dW = sum_t (step t's term): start from zeros, add every step's term with +=",
        {"min-char-rnn": "dWhh += np.dot(dhraw, hs[t-1].T)   # += for every gradient summed over the steps",
         "cs231n": "dWx += dWx_t; dWh += dWh_t; db += db_t   # in rnn_backward's loop, from zeros",
         "charrnn": "dW = sum_t term_t (+= inside the loop over t)",
         "coursera": "dWax += gradients['dWax']; dWaa += gradients['dWaa']; dba += gradients['dba']   # in "
                     "rnn_backward's loop, from zeros"}),
    "elementwise-chain": Code(
        "the chain through several steps is an elementwise product of per-step factors, not a product of Jacobians",
        "right for the step's own loss and one step back (k = 0, 1), wrong at every distance from two steps back "
        "(the error growing with the distance where the factors are matrices)",
        "dh_s/dh_t = J_s J_{s-1} ... J_{t+1}, matrix products of J_k = diag(1 - h_k^2) Whh; carrying "
        "dh_next = Whh^T dh_raw back one step at a time computes exactly that",
        {"min-char-rnn": "dhnext = np.dot(Whh.T, dhraw)   # carried back step by step: no chain of factors to multiply",
         "cs231n": "dprev_h = dtanh.dot(Wh.T)   # carried back step by step: no chain of factors to multiply",
         "charrnn": "replace the elementwise * between Jacobians by matrix products (@), or carry dh_next back "
                    "one step at a time"}),
    "state-gradient": Code(
        "the gradient of the carried state is missing or wrong while the weights are right",
        "every weight gradient is right; only the initial state's is wrong",
        "dh0 = what flows back out of step 0: Whh^T dh_raw_0 (the dh_next left after the loop); LSTM: dc0 = dc_0 * f_0",
        {"cs231n-rnn": "dh0 = dprev_h   # after the loop over t in reversed(range(T)), the dprev_h of step 0",
         "cs231n-lstm": "dh0 = dprev_h   # after the loop; lstm_step_backward's dprev_c = dc * f",
         "coursera": "da0 = da_prevt   # after the loop over t in reversed(range(T_x))"}),
    "missing-dc-path": Code(
        "the LSTM's cell-state path is missing: dc_next = dc_t * f is not carried back",
        "the gradient that should flow back through c_{t-1} is dropped",
        "dc_t = dh_t * o * (1 - tanh(c_t)^2) + dc_next,  dc_next = dc_t * f  (into step t-1)",
        {"cs231n-lstm": "dc = dnext_c + dnext_h * o * (1 - np.tanh(next_c) ** 2);  dprev_c = dc * f   "
                        "# and lstm_backward passes dprev_c to the step before",
         "coursera-lstm": "dc = dc_next + da_next * ot * (1 - np.tanh(c_next) ** 2);  dc_prev = dc * ft"}),
    "sigmoid-derivative": Code(
        "sigmoid' taken of a gate's output, which is already a sigmoid",
        "the LSTM's gate gradients are off by the slope: i, f and o are sigmoid(a), so their slope is i * (1 - i); "
        "sigmoid(i) * (1 - sigmoid(i)) applies the sigmoid a second time",
        "da_i = di * i * (1 - i),  da_f = df * f * (1 - f),  da_o = do * o * (1 - o)   (i, f, o the gates' outputs)",
        {"cs231n-lstm": "dai = di * i * (1 - i);  daf = df * f * (1 - f);  dao = do * o * (1 - o)",
         "coursera-lstm": "dit = dc * cct * it * (1 - it);  dft = dc * c_prev * ft * (1 - ft);  "
                          "dot = da_next * np.tanh(c_next) * ot * (1 - ot)",
         "charrnn-lstm": "da_i = di * i * (1 - i), and so for f and o: the slope of the output, not sigmoid' of it"}),
    "first-step-wrap": Code(
        "the first step's previous h wraps around to the chunk's last h",
        "only the recurrent weight's gradient is wrong, and only its term at step 0: hs[t-1] at t = 0 reads hs[-1], "
        "which on a list (or an array) is the last step's h, not hprev",
        "dWhh = sum_t dh_raw_t h_{t-1}^T with h_{-1} = hprev, the state the chunk started from",
        {"min-char-rnn": "hs = {}; hs[-1] = np.copy(hprev)   # a dict keyed by step, so hs[-1] is hprev; or use "
                         "hprev when t == 0",
         "charrnn": "h_prev_t = h_prev if t == 0 else hs[t - 1]   # not hs[t - 1] alone on a list of the T states"}),
    "zero-gradient": Code(
        "a gradient is all zeros: its term is never added",
        "the gradient is exactly zero where the exact one is not; typically a typo adds another array into itself "
        "(dc += dc) or into the wrong gradient, or the += line sits outside the loop that runs",
        "each weight's gradient = sum_t (its term at step t), added inside the loop over t",
        {"min-char-rnn": "dby += dy   # inside the loop over t, beside dWhy += np.dot(dy, hs[t].T)",
         "charrnn": "grads['by'] += dy[t].sum(axis=0)   # inside the loop over t"}),
    "unknown": Code(
        "none of the classic mistakes reproduces your numbers",
        "the per-step picture above shows where yours and the exact terms part",
        "compare your terms with the exact ones step by step, starting where they first differ"),
}

# What each switch of mistakes.py looks like in the learner's terms (detail of a tanh-derivative finding).
VARIANTS = {
    "missing": "missing: dh_raw_t = dh_t",
    "pre-activation": "1 - a_t^2 of the pre-activation a_t, where 1 - h_t^2 = 1 - tanh(a_t)^2 belongs",
    "tanh-twice": "1 - tanh(h_t)^2: tanh taken of h_t, which is already tanh(a_t)",
    "previous-step": "1 - h_{t-1}^2: the previous step's h where h_t belongs",
    "cell-missing": "missing in dc_t: the factor 1 - tanh(c_t)^2 left out",
    "cell-pre-activation": "1 - c_t^2 in dc_t, where 1 - tanh(c_t)^2 belongs",
    "g-missing": "missing in da_g: the factor 1 - g^2 left out",
    "g-pre-activation": "1 - a_g^2 of the pre-activation in da_g, where 1 - g^2 belongs",
    "cell-tanh-twice": "1 - tanh(tanh(c_t))^2 in dc_t: tanh taken of tanh(c_t), where 1 - tanh(c_t)^2 belongs",
    "cell-of-g": "1 - g^2 in dc_t: the candidate g's slope, where tanh(c_t)'s, 1 - tanh(c_t)^2, belongs",
    "g-tanh-twice": "1 - tanh(g)^2 in da_g: tanh taken of g, which is already tanh(a_g)",
}
