"""The BPTT tutor (python -m charrnn.gradcheck --yours, charrnn.check_bptt) on learners' code.

tests/fixtures/bptt holds correct implementations of every shape, written the way learners write
them; each mistake below is one of them with a line or two changed the way a learner gets it wrong.
One sandbox process serves the whole module, so NumPy and torch load once.
"""

import json
import re

import numpy as np
import pytest

import charrnn
from charrnn import gradcheck
from charrnn.gradcheck.tutor.exact import exact, exact_terms
from charrnn.gradcheck.tutor.mistakes import backward
from charrnn.gradcheck.tutor.picture import learner_terms
from charrnn.gradcheck.problem import relative_error
from charrnn.gradcheck.tutor.sandbox import LearnerError, Sandbox
from charrnn.gradcheck.tutor.shape_charrnn import CharRNN
from charrnn.gradcheck.tutor.shape_coursera import Coursera
from charrnn.gradcheck.tutor.shape_cs231n import CS231n
from charrnn.gradcheck.tutor.shape_minchar import MinChar
from charrnn.gradcheck.tutor.check import Options, run_check
from tests.conftest import REPO, run_scripts

FIXTURES = REPO / "tests" / "fixtures" / "bptt"
SIZES = {"B": 3, "T": 5, "H": 4, "V": 6}
RNN_SEQ, RNN_STEP = "rnn_forward / rnn_backward", "rnn_step_forward / rnn_step_backward"
LSTM_SEQ, LSTM_STEP = "lstm_forward / lstm_backward", "lstm_step_forward / lstm_step_backward"
CO_RNN_STEP, CO_RNN_SEQ = "rnn_cell_forward / rnn_cell_backward", RNN_SEQ
CO_LSTM_STEP, CO_LSTM_SEQ = "lstm_cell_forward / lstm_cell_backward", LSTM_SEQ


@pytest.fixture(scope="module")
def box():
    with Sandbox(time_limit=60) as sandbox:
        yield sandbox


def write(tmp_path, fixture: str, edits=(), name: str = "my_rnn.py"):
    """The fixture with each (old, new) edit made once, as the learner's file."""
    text = (FIXTURES / fixture).read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path


def codes(result) -> dict[str, list[str]]:
    """{implementation: its diagnosis codes} of every implementation that failed."""
    return {i.function: [d.code for d in i.diagnosis] for i in result.implementations if i.status == "fail"}


def check(box, path, function=None, **options):
    return run_check(path, function, Options(**options), box)


@pytest.mark.parametrize("fixture,options,arrays,functions", [
    ("min_char_rnn.py", {}, "numpy", ["lossFun"]),
    ("min_char_rnn_torch.py", {}, "torch", ["lossFun"]),
    ("rnn_layers.py", {}, "numpy", [RNN_STEP, RNN_SEQ, LSTM_STEP, LSTM_SEQ]),
    ("rnn_layers_torch.py", {}, "torch", [RNN_STEP, RNN_SEQ, LSTM_STEP, LSTM_SEQ]),
    ("my_rnn_class.py", {}, "numpy", ["loss_and_grads"]),
    ("charrnn_own.py", {"cell": "lstm"}, "numpy", ["loss_and_grads"]),
    ("charrnn_own.py", {"cell": "gru"}, "numpy", ["loss_and_grads"]),
    ("charrnn_own.py", {"cell": "mingru"}, "numpy", ["loss_and_grads"]),
    ("charrnn_own.py", {"cell": "minlstm"}, "numpy", ["loss_and_grads"]),
    ("min_gru.py", {"cell": "mingru"}, "numpy", ["loss_and_grads"]),
    ("coursera_rnn.py", {}, "numpy", [CO_RNN_STEP, CO_RNN_SEQ, CO_LSTM_STEP, CO_LSTM_SEQ]),
    ("minchar_class.py", {}, "numpy", ["CharRNN.lossFun"]),
])
def test_every_correct_shape_passes_with_every_output_and_gradient_checked(box, fixture, options, arrays, functions):
    result = check(box, FIXTURES / fixture, **options)
    assert (result.status, result.exit_code) == ("pass", 0), str(result)
    assert [i.function for i in result.implementations] == functions
    for impl in result.implementations:
        assert impl.arrays == arrays
        assert impl.diagnosis == [] and impl.per_step == {}
        assert all(c.passed and c.error < 1e-13 for c in impl.outputs + impl.gradients), impl.function
        assert len(impl.problems) == 3
    names = {"lossFun": ["dWxh", "dWhh", "dWhy", "dbh", "dby"], "CharRNN.lossFun": ["dWxh", "dWhh", "dWhy", "dbh", "dby"],
             RNN_SEQ: ["dx", "dh0", "dWx", "dWh", "db"] if fixture != "coursera_rnn.py" else
             ["dx", "da0", "dWax", "dWaa", "dba"],
             LSTM_SEQ: ["dx", "da0", "dWf", "dWi", "dWc", "dWo", "dbf", "dbi", "dbc", "dbo"],
             CO_LSTM_STEP: ["dxt", "da_prev", "dc_prev", "dWf", "dWi", "dWc", "dWo", "dbf", "dbi", "dbc", "dbo"],
             LSTM_STEP: ["dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"],
             "loss_and_grads": ["Wxh", "Why", "bh", "by"] if options.get("cell", "").startswith("min") else
             ["Wxh", "Whh", "Why", "bh", "by"] + (["bhn"] if options.get("cell") == "gru" else [])}
    for impl in result.implementations:
        if impl.function in names and (impl.function != LSTM_SEQ or fixture == "coursera_rnn.py"):
            assert sorted(c.name for c in impl.gradients) == sorted(names[impl.function])


MC, MCT, AD, CO = "min_char_rnn.py", "min_char_rnn_torch.py", "my_rnn_class.py", "coursera_rnn.py"
CS, CST = "rnn_layers.py", "rnn_layers_torch.py"
DH_MC = "dh = np.dot(Why.T, dy) + dhnext"
TANH_MC = "dhraw = (1 - hs[t] * hs[t]) * dh"
DWHH_MC = "dWhh += np.dot(dhraw, hs[t - 1].T)"
DY_MC = "dy = np.copy(ps[t])\n        dy[targets[t]] -= 1"
LSTM_DC = "dc = dnext_c + dnext_h * o * (1 - np.tanh(next_c) ** 2)"
MISTAKES = {
    # code: [(fixture, edits, {implementation: codes} of every implementation that must fail)]
    "missing-dh-next": [
        (CO, [("rnn_cell_backward(da[:, :, t] + da_prevt, caches[t])", "rnn_cell_backward(da[:, :, t], caches[t])")],
         {CO_RNN_SEQ: ["missing-dh-next"]}),
        (CO, [("lstm_cell_backward(da[:, :, t] + da_prevt", "lstm_cell_backward(da[:, :, t]")],
         {CO_LSTM_SEQ: ["missing-dh-next"]}),
        (MC, [(DH_MC, "dh = np.dot(Why.T, dy)")], {"lossFun": ["missing-dh-next"]}),
        (MCT, [("dh = Why.T @ dy + dhnext", "dh = Why.T @ dy")], {"lossFun": ["missing-dh-next"]}),
        (CS, [("rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])", "rnn_step_backward(dh[:, t, :], cache[t])")],
         {RNN_SEQ: ["missing-dh-next"]}),
        (CST, [("lstm_step_backward(dh[:, t] + dprev_h, dprev_c", "lstm_step_backward(dh[:, t], dprev_c")],
         {LSTM_SEQ: ["missing-dh-next"]}),
        (CS, [("lstm_step_backward(dh[:, t, :] + dprev_h, dprev_c", "lstm_step_backward(dh[:, t, :], dprev_c")],
         {LSTM_SEQ: ["missing-dh-next"]}),
        (AD, [("delta = (dz @ self.V + delta_next)", "delta = (dz @ self.V)")],
         {"loss_and_grads": ["missing-dh-next"]}),
    ],
    "tanh-derivative": [
        (CO, [("dtanh = (1 - a_next ** 2) * da_next", "dtanh = da_next")],
         {CO_RNN_STEP: ["tanh-derivative"], CO_RNN_SEQ: ["tanh-derivative"]}),
        (CO, [("ot * (1 - np.tanh(c_next) ** 2)", "ot * (1 - c_next ** 2)")],
         {CO_LSTM_STEP: ["tanh-derivative"], CO_LSTM_SEQ: ["tanh-derivative"]}),
        (MC, [(TANH_MC, "dhraw = dh")], {"lossFun": ["tanh-derivative"]}),
        (MC, [(TANH_MC, "dhraw = (1 - np.tanh(hs[t]) ** 2) * dh")], {"lossFun": ["tanh-derivative"]}),
        (MC, [(TANH_MC, "dhraw = (1 - hs[t - 1] * hs[t - 1]) * dh")], {"lossFun": ["tanh-derivative"]}),
        (CST, [("dtanh = (1 - next_h ** 2) * dnext_h", "dtanh = dnext_h")],
         {RNN_STEP: ["tanh-derivative"], RNN_SEQ: ["tanh-derivative"]}),
        (CS, [(LSTM_DC, "dc = dnext_c + dnext_h * o * (1 - next_c ** 2)")],
         {LSTM_STEP: ["tanh-derivative"], LSTM_SEQ: ["tanh-derivative"]}),
        (CS, [(LSTM_DC, "dc = dnext_c + dnext_h * o * (1 - np.tanh(np.tanh(next_c)) ** 2)")],
         {LSTM_STEP: ["tanh-derivative"], LSTM_SEQ: ["tanh-derivative"]}),
        (CS, [(LSTM_DC, "dc = dnext_c + dnext_h * o * (1 - g ** 2)")],
         {LSTM_STEP: ["tanh-derivative"], LSTM_SEQ: ["tanh-derivative"]}),
        (CS, [("dag = dg * (1 - g ** 2)", "dag = dg * (1 - np.tanh(g) ** 2)")],
         {LSTM_STEP: ["tanh-derivative"], LSTM_SEQ: ["tanh-derivative"]}),
        (CST, [("dc * i * (1 - g ** 2)", "dc * i")], {LSTM_STEP: ["tanh-derivative"], LSTM_SEQ: ["tanh-derivative"]}),
    ],
    "h-index": [
        (MC, [(DWHH_MC, "dWhh += np.dot(dhraw, hs[t].T)")], {"lossFun": ["h-index"]}),
        (MC, [("dWhy += np.dot(dy, hs[t].T)", "dWhy += np.dot(dy, hs[t - 1].T)")], {"lossFun": ["h-index"]}),
        (CS, [("dWh = prev_h.T.dot(dtanh)", "dWh = next_h.T.dot(dtanh)")],
         {RNN_STEP: ["h-index"], RNN_SEQ: ["h-index"]}),
        (CST, [("dWh = prev_h.T @ da", "dWh = (o * tanh_c).T @ da")], {LSTM_STEP: ["h-index"], LSTM_SEQ: ["h-index"]}),
        (CST, [("dWh = prev_h.T @ dtanh", "dWh = next_h.T @ dtanh")], {RNN_STEP: ["h-index"], RNN_SEQ: ["h-index"]}),
        (CS, [("dWh = prev_h.T.dot(da)", "dWh = (o * np.tanh(next_c)).T.dot(da)")],
         {LSTM_STEP: ["h-index"], LSTM_SEQ: ["h-index"]}),
    ],
    "transposed-whh": [
        (CO, [("da_prev = np.dot(Waa.T, dtanh)", "da_prev = np.dot(Waa, dtanh)")],
         {CO_RNN_STEP: ["transposed-whh"], CO_RNN_SEQ: ["transposed-whh"]}),
        (MC, [("dhnext = np.dot(Whh.T, dhraw)", "dhnext = np.dot(Whh, dhraw)")], {"lossFun": ["transposed-whh"]}),
        (CS, [("dprev_h = dtanh.dot(Wh.T)", "dprev_h = dtanh.dot(Wh)")],
         {RNN_STEP: ["transposed-whh"], RNN_SEQ: ["transposed-whh"]}),
        (CST, [("dprev_h = dtanh @ Wh.T", "dprev_h = dtanh @ Wh")],
         {RNN_STEP: ["transposed-whh"], RNN_SEQ: ["transposed-whh"]}),
    ],
    "loss-scale": [
        (MC, [("dy[targets[t]] -= 1  #", "dy[targets[t]] -= 1\n        dy /= len(inputs)  #")],
         {"lossFun": ["loss-scale"]}),
        (MCT, [("dy[targets[t]] -= 1", "dy[targets[t]] -= 1\n        dy /= len(inputs)")], {"lossFun": ["loss-scale"]}),
        (AD, [("grads = {\"Wxh\": dU / N, \"Whh\": dW / N, \"Why\": dV / N, \"bh\": db / N, \"by\": dc / N}",
               "grads = {\"Wxh\": dU, \"Whh\": dW, \"Why\": dV, \"bh\": db, \"by\": dc}")],
         {"loss_and_grads": ["loss-scale"]}),
    ],
    "clipped": [
        (MC, [("np.clip(dparam, -5, 5, out=dparam)", "np.clip(dparam, -1, 1, out=dparam)")], {"lossFun": ["clipped"]}),
        (MC, [("    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:\n        np.clip(dparam, -5, 5, out=dparam)",
               "    norm = np.sqrt(sum(np.sum(d * d) for d in [dWxh, dWhh, dWhy, dbh, dby]))\n"
               "    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:\n        dparam *= min(1.0, 1.5 / norm)")],
         {"lossFun": ["clipped"]}),
        (MCT, [("    return loss, dWxh,", "    for d in [dWxh, dWhh, dWhy, dbh, dby]:\n        d.clamp_(-1, 1)\n"
                                             "    return loss, dWxh,")], {"lossFun": ["clipped"]}),
    ],
    "sign": [
        (MC, [(DY_MC, "dy = -np.copy(ps[t])\n        dy[targets[t]] += 1")], {"lossFun": ["sign"]}),
        (MCT, [("dy = ps[t].clone()\n        dy[targets[t]] -= 1", "dy = -ps[t].clone()\n        dy[targets[t]] += 1")],
         {"lossFun": ["sign"]}),
    ],
    "not-accumulated": [
        (CO, [('        dWaa += gradients["dWaa"]', '        dWaa = gradients["dWaa"]')], {CO_RNN_SEQ: ["not-accumulated"]}),
        (MC, [(DWHH_MC, "dWhh = np.dot(dhraw, hs[t - 1].T)")], {"lossFun": ["not-accumulated"]}),
        (CS, [("        dWh += dWh_t\n", "        dWh = dWh_t\n")], {RNN_SEQ: ["not-accumulated"]}),
        (CST, [("        dWx += dWx_t\n", "        dWx = dWx_t\n")], {RNN_SEQ: ["not-accumulated"]}),
        (CS, [("dprev_h, dprev_c, cache[t])\n        dWx += dWx_t",
               "dprev_h, dprev_c, cache[t])\n        dWx = dWx_t")],
         {LSTM_SEQ: ["not-accumulated"]}),
    ],
    "state-gradient": [
        (CS, [("    dh0 = dprev_h\n", "    dh0 = dh[:, 0, :]\n")], {RNN_SEQ: ["state-gradient"]}),
        (CST, [("    return dx, dprev_h, dWx, dWh, db\n\n\ndef lstm_step",
                "    return dx, dh[:, 0], dWx, dWh, db\n\n\ndef lstm_step")],
         {RNN_SEQ: ["state-gradient"]}),
        (CST, [("dprev_c, cache[t])\n        dWx += dWx_t\n        dWh += dWh_t\n        db += db_t\n"
                "    return dx, dprev_h,",
                "dprev_c, cache[t])\n        dWx += dWx_t\n        dWh += dWh_t\n        db += db_t\n"
                "    return dx, torch.zeros_like(dprev_h),")],
         {LSTM_SEQ: ["state-gradient"]}),
    ],
    "sigmoid-derivative": [
        (CS, [("dai = di * i * (1 - i)", "dai = di * sigmoid(i) * (1 - sigmoid(i))"),
              ("daf = df * f * (1 - f)", "daf = df * sigmoid(f) * (1 - sigmoid(f))"),
              ("dao = do * o * (1 - o)", "dao = do * sigmoid(o) * (1 - sigmoid(o))")],
         {LSTM_STEP: ["sigmoid-derivative"], LSTM_SEQ: ["sigmoid-derivative"]}),
    ],
    "first-step-wrap": [
        (MC, [("xs, hs, ys, ps = {}, {}, {}, {}\n    hs[-1] = np.copy(hprev)", "xs, hs, ys, ps = {}, [], {}, {}"),
              ("hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)",
               "hs.append(np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1] if t else hprev) + bh))")],
         {"lossFun": ["first-step-wrap"]}),
    ],
    "zero-gradient": [
        (MC, [("dby += dy", "dby += dby")], {"lossFun": ["zero-gradient"]}),
        (AD, [("dc += dz.sum(axis=0)", "dc += dc")], {"loss_and_grads": ["zero-gradient"]}),
    ],
    "missing-dc-path": [
        (CO, [("dc = dc_next + da_next", "dc = da_next")],
         {CO_LSTM_STEP: ["missing-dc-path"], CO_LSTM_SEQ: ["missing-dc-path"]}),
        (CS, [(LSTM_DC, "dc = dnext_h * o * (1 - np.tanh(next_c) ** 2)")],
         {LSTM_STEP: ["missing-dc-path"], LSTM_SEQ: ["missing-dc-path"]}),
        (CST, [("dc = dnext_c + dnext_h * o", "dc = dnext_h * o")],
         {LSTM_STEP: ["missing-dc-path"], LSTM_SEQ: ["missing-dc-path"]}),
    ],
}


@pytest.mark.parametrize("fixture,edits,expected", [case for cases in MISTAKES.values() for case in cases],
                         ids=[f"{code}-{i}" for code, cases in MISTAKES.items() for i in range(len(cases))])
def test_each_classic_mistake_gets_its_code_and_nothing_wrong_passes(box, tmp_path, fixture, edits, expected):
    result = check(box, write(tmp_path, fixture, edits))
    assert (result.status, result.exit_code) == ("fail", 1)
    assert codes(result) == expected, str(result)


def test_every_code_of_the_table_has_a_proof_above():
    from charrnn.gradcheck.tutor.codes import CODES

    proven = set(MISTAKES) | {"elementwise-chain", "unknown", "clipped-per-stream"}   # the last three: tests below
    assert proven == set(CODES)


def test_two_mistakes_at_once_are_both_named_where_the_evidence_shows_both(box, tmp_path):
    edits = [(DH_MC, "dh = np.dot(Why.T, dy)"), (DWHH_MC, "dWhh = np.dot(dhraw, hs[t - 1].T)")]
    result = check(box, write(tmp_path, MC, edits))
    assert codes(result) == {"lossFun": ["missing-dh-next", "not-accumulated"]}
    (impl,) = result.implementations
    assert impl.diagnosis[1].gradients == ["dWhh"]
    assert impl.diagnosis[1].lines == ["line 48: dWhh = np.dot(dhraw, hs[t - 1].T)"]


def test_a_textbook_that_forgot_tanh_and_used_h_t_for_h_t_minus_1_gets_both(box, tmp_path):
    edits = [(TANH_MC, "dhraw = dh"), (DWHH_MC, "dWhh += np.dot(dhraw, hs[t].T)")]
    result = check(box, write(tmp_path, MC, edits))
    (impl,) = result.implementations
    assert [(d.code, d.detail) for d in impl.diagnosis] == [
        ("tanh-derivative", "missing: dh_raw_t = dh_t"), ("h-index", "dWhh: h_t where h_{t-1} belongs")]
    assert impl.diagnosis[0].fix == "dhraw = (1 - hs[t] * hs[t]) * dh"
    assert impl.diagnosis[1].lines == ["line 48: dWhh += np.dot(dhraw, hs[t].T)"]


def test_the_elementwise_chain_is_right_one_step_back_and_wrong_from_two_growing_with_distance(box):
    """torch.nn.RNN's backward re-derived with dh_s/dh_t as an elementwise product of the per-step
    Jacobians (a forum's "0.5162 where torch gets 0.5053")."""
    result = check(box, FIXTURES / "elementwise_chain.py")
    (impl,) = result.implementations
    assert [d.code for d in impl.diagnosis] == ["elementwise-chain"]
    assert impl.summary.startswith("Why and by are right: the output layer is fine")
    rows = impl.per_step["Whh"]["by_distance"]
    assert [row["error"] < 1e-12 for row in rows] == [True, True, False, False, False, False]
    shortfall = [1 - row["yours"] / row["exact"] for row in rows[2:]]
    assert shortfall == sorted(shortfall) and shortfall[0] > 0.5


def test_the_forums_vector_form_of_the_chain_is_named_by_its_signature(box):
    result = check(box, FIXTURES / "elementwise_chain_vector.py")
    (impl,) = result.implementations
    assert [d.code for d in impl.diagnosis] == ["elementwise-chain"]
    assert impl.diagnosis[0].detail.startswith("by its signature: right at k = 0 and 1, wrong at every k from 2")
    assert "line 30: dh_t = dh_t * ((1 - hs[t + 2] ** 2) @ W_hh)" in impl.diagnosis[0].lines[1]


def test_each_stream_clipped_on_its_own_is_clipped_per_stream(box, tmp_path):
    """A one-stream lossFun that clips by norm, run per stream by an adapter: each stream's gradient is cut
    on its own before the streams are added up, which no global clip reproduces."""
    adapter = (REPO / "docs" / "model.md").read_text().split(
        "### An adapter for a single stream of column vectors")[1].split("```python\n")[1].split("```")[0]
    path = write(tmp_path, MC, [("    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:\n        np.clip(dparam, -5, 5, "
                                 "out=dparam)", "    norm = np.sqrt(sum(np.sum(d * d) for d in [dWxh, dWhh, dWhy, dbh, "
                                 "dby]))\n    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:\n        dparam *= min(1.0, "
                                 "1.5 / norm)")])
    path.write_text(path.read_text() + "\n\n" + adapter)
    result = check(box, path, "loss_and_grads")
    assert codes(result) == {"loss_and_grads": ["clipped-per-stream"]}, str(result)
    assert "(all the weights' gradients together; to a norm of 0.08333" in result.implementations[0].diagnosis[0].detail
    path.write_text(path.read_text().replace("dparam *= min(1.0, 1.5 / norm)", "pass"))
    assert check(box, path, "loss_and_grads").status == "pass"   # the docs' adapter itself is right


def test_a_first_step_mistake_is_not_smeared_over_every_step_of_the_picture(box, tmp_path):
    edits = MISTAKES["first-step-wrap"][0][1]
    result = check(box, write(tmp_path, MC, edits))
    steps = result.implementations[0].per_step["dWhh"]["steps"]
    assert [row["error"] > 1e-3 for row in steps] == [True] + [False] * 5
    assert result.implementations[0].diagnosis[0].detail == ("dWhh: step 0 used the chunk's last h where the h before "
                                                             "it (hprev) belongs")


def test_a_mistake_outside_the_table_is_unknown_with_the_picture_and_no_guess(box, tmp_path):
    result = check(box, write(tmp_path, MC, [("dhnext = np.dot(Whh.T, dhraw)", "dhnext = 0.5 * np.dot(Whh.T, dhraw)")]))
    (impl,) = result.implementations
    assert [d.code for d in impl.diagnosis] == ["unknown"]
    assert impl.diagnosis[0].detail == (
        "right for each step's own loss (k = 0), wrong from k = 1: look at what carries the gradient from h_t back to "
        "h_{t-1}; your terms k steps back are 0.5^k times the exact ones, a factor 0.5 per step back")
    text = str(result)
    assert "dWhh by time step" in text and "diagnosis: unknown" in text


def test_a_mingru_whose_gradient_back_through_time_skips_1_minus_z_is_shown_where_it_parts(box, tmp_path):
    """A cell with no mistake table: the head is right, the recurrence wrong, and the picture says from which
    distance, for the weight the learner's file has (no Whh)."""
    path = write(tmp_path, "min_gru.py", [("dh_next = dh * (1 - zs[t])", "dh_next = dh * zs[t]")])
    result = check(box, path, cell="mingru")
    (impl,) = result.implementations
    assert [c.name for c in impl.gradients if not c.passed] == ["Wxh", "bh"]
    assert [d.code for d in impl.diagnosis] == ["unknown"]
    assert impl.diagnosis[0].detail.startswith("right for each step's own loss (k = 0), wrong from k = 1: look at "
                                               "what carries the gradient from h_t back to h_{t-1}")
    assert "Wxh by time step" in str(result)


def test_a_wrong_forward_output_fails_and_says_the_gradients_are_right(box, tmp_path):
    result = check(box, write(tmp_path, MC, [("hs[len(inputs) - 1]", "hs[0]")]))
    (impl,) = result.implementations
    assert impl.status == "fail" and [c.name for c in impl.outputs if not c.passed] == ["h_last"]
    assert [(d.code, d.detail) for d in impl.diagnosis] == [
        ("unknown", "every gradient is right, but what your forward returns (h_last) is not the exact value")]
    assert impl.notes == []


def test_min_char_rnn_lossFun_is_bptt_with_and_without_its_clip_until_the_clip_bites(box, tmp_path):
    no_clip = write(tmp_path, MC, [("np.clip(dparam, -5, 5, out=dparam)", "pass")])
    for path in (FIXTURES / MC, no_clip):
        assert check(box, path).status == "pass"
    big = {"seq_length": 100, "vocab_size": 3, "seed": 1}   # its exact gradients exceed 5 here
    assert check(box, no_clip, **big).status == "pass"
    result = check(box, FIXTURES / MC, **big)
    (impl,) = result.implementations
    assert [(d.code, d.detail) for d in impl.diagnosis] == [("clipped", "every entry cut to +-5")]
    assert impl.diagnosis[0].lines == ["line 51: np.clip(dparam, -5, 5, out=dparam)  # clip to mitigate exploding "
                                       "gradients"]
    assert impl.per_step["dWhh"]["problem"] == "T=8 H=5 V=3 seed 1"


def test_the_missing_dh_next_report_walks_from_the_numbers_to_the_line(box, tmp_path):
    result = check(box, write(tmp_path, MC, [(DH_MC, "dh = np.dot(Why.T, dy)")]))
    text = str(result)
    assert ("dWhy and dby are right: the output layer is fine; every gradient that flows through the recurrence is "
            "wrong (dWxh, dWhh, dbh)") in " ".join(text.split())
    assert "  fix:      dh = np.dot(Why.T, dy) + dhnext" in text
    assert "  look at:  line 44: dh = np.dot(Why.T, dy)  # backprop into h" in text
    steps = result.implementations[0].per_step["dWhh"]
    assert [row["error"] < 1e-12 for row in steps["steps"]] == [False] * 5 + [True]   # the last step only
    assert [row["yours"] < 1e-12 for row in steps["by_distance"]] == [False] + [True] * 5
    assert text.splitlines()[-1] == "FAIL"


# The per-step inference, held to autograd's exact per-step terms.
def inferred_and_exact(box, shape, path, sizes=SIZES):
    loaded = box.load(path)
    case = shape.case(sizes, 4)
    return learner_terms(shape, box, loaded, case, exact(shape, case).states), exact_terms(shape, case)


@pytest.mark.parametrize("shape,fixture", [
    (MinChar("rnn", ("lossFun",), "numpy"), MC),
    (CS231n("rnn", ("rnn_forward", "rnn_backward"), "torch"), CST),
    (CharRNN("rnn", ("loss_and_grads",), "numpy", False), AD),
    (CharRNN("lstm", ("loss_and_grads",), "numpy", True), "charrnn_own.py"),
])
def test_the_inferred_terms_of_a_correct_implementation_are_autograds_per_step_terms(box, shape, fixture):
    yours, terms = inferred_and_exact(box, shape, FIXTURES / fixture)
    assert set(yours) == set(terms) and len(yours) == len(shape.weights)
    for g in yours:
        assert yours[g].shape == terms[g].shape == (5, 5, *terms[g].shape[2:])
        assert relative_error(yours[g], terms[g]) < 1e-12, g


def test_where_a_chunk_cannot_start_from_any_state_the_terms_are_by_loss_step(box):
    shape = CS231n("lstm", ("lstm_forward", "lstm_backward"), "numpy")
    yours, terms = inferred_and_exact(box, shape, FIXTURES / CS)
    for g in yours:
        assert relative_error(yours[g], terms[g].sum(axis=1)) < 1e-12, g   # D(0, s) = sum_t dl_s/dW_t


def test_the_inferred_terms_without_dh_next_are_each_losses_own_step_alone(box, tmp_path):
    shape = MinChar("rnn", ("lossFun",), "numpy")
    yours, terms = inferred_and_exact(box, shape, write(tmp_path, MC, [(DH_MC, "dh = np.dot(Why.T, dy)")]))
    for g in ("dWxh", "dWhh", "dbh"):
        expected = np.zeros_like(terms[g])
        for s in range(5):
            expected[s, s] = terms[g][s, s]
        assert relative_error(yours[g], expected) < 1e-12, g


@pytest.mark.parametrize("shape", [
    MinChar("rnn", ("lossFun",), "numpy"),
    *[CS231n(cell, pair, "numpy") for cell in ("rnn", "lstm")
      for pair in ((f"{cell}_step_forward", f"{cell}_step_backward"), (f"{cell}_forward", f"{cell}_backward"))],
    *[CharRNN(cell, ("loss_and_grads",), "numpy", True) for cell in ("rnn", "lstm")],
    *[Coursera(cell, pair, "numpy") for cell in ("rnn", "lstm")
      for pair in ((f"{cell}_cell_forward", f"{cell}_cell_backward"), (f"{cell}_forward", f"{cell}_backward"))],
])
def test_the_hand_written_backward_with_no_mistake_is_autograd_in_every_layout(shape):
    for seed, sizes in enumerate([SIZES, {"B": 2, "T": 3, "H": 5, "V": 3}]):
        case = shape.case(sizes, seed)
        truth = exact(shape, case).grads
        ours = shape.from_canon(backward(shape.canon(case)).grads)
        assert set(ours) == set(truth)
        for g in truth:
            assert relative_error(ours[g], truth[g]) < 1e-13, g


# What the learner's code does wrong outside the math: their traceback, then one line, exit code 2.
BROKEN = [
    ("def lossFun(inputs, targets, hprev)\n    return 1\n", None, "my_rnn.py does not load: SyntaxError: expected "
     "':'; the traceback above is from your file", "SyntaxError"),
    ("import numpy_of_my_own\n\ndef lossFun(inputs, targets, hprev):\n    return 1\n", None,
     "my_rnn.py does not load: ModuleNotFoundError: No module named 'numpy_of_my_own'; the traceback above is from "
     "your file", "ModuleNotFoundError"),
    ("def forward(x):\n    return x\n", None, "my_rnn.py defines no function of a shape the check understands "
     "(it defines forward); the shapes understood: lossFun(inputs, targets, hprev)", None),
    ("def lossFun(inputs, targets, hprev):\n    return 1\n", "bptt", "my_rnn.py defines no function bptt; it defines "
     "lossFun", None),
    ("def lossFun(inputs, targets):\n    return 1\n", None, "lossFun(inputs, targets) does not match min-char-rnn's "
     "lossFun(inputs, targets, hprev)", None),
    ("def go(a, b):\n    return 1\n", "go", "go(a, b) matches none of the shapes understood: lossFun(inputs, targets, "
     "hprev)", None),
    ("def rnn_forward(x, h0, Wx, Wh, b):\n    return x, None\n", None, "rnn_forward needs its partner rnn_backward, "
     "which the file does not define", None),
]


@pytest.mark.parametrize("source,function,message,traceback", BROKEN, ids=[
    "syntax", "import", "no-shape", "no-such-function", "signature", "named-no-shape", "no-partner"])
def test_a_file_that_cannot_be_checked_shows_its_traceback_and_one_line(box, tmp_path, source, function, message,
                                                                        traceback):
    path = tmp_path / "my_rnn.py"
    path.write_text(source)
    result = check(box, path, function)
    assert (result.status, result.exit_code) == ("error", 2)
    assert result.error["message"].startswith(message), result.error["message"]
    if traceback is None:
        assert result.error["traceback"] is None
    else:
        assert str(path) in result.error["traceback"] and traceback in result.error["traceback"]
        assert "worker.py" not in result.error["traceback"] and "<frozen" not in result.error["traceback"]
    assert str(result).splitlines()[-1] == f"error: {result.error['message']}"


def test_python_2_code_is_named_as_such_with_what_to_do(box, tmp_path):
    """CS231n's 2016 assignments and many min-char-rnn copies are Python 2."""
    path = tmp_path / "rnn_layers.py"
    path.write_text("import numpy as np\nprint 'loaded'\n\ndef lossFun(inputs, targets, hprev):\n    return 1\n")
    result = check(box, path)
    assert result.error["message"] == (
        "rnn_layers.py does not load: SyntaxError: Missing parentheses in call to 'print'. Did you mean print(...)?; "
        "the traceback above is from your file; this is Python 2 code: make it Python 3 (print(...), range for "
        "xrange; the 2to3 tool does both) and run the check again")
    path = write(tmp_path, MC, [("for t in range(len(inputs)):", "for t in xrange(len(inputs)):")])
    assert check(box, path).error["message"].endswith("this is Python 2 code: make it Python 3 (print(...), range for "
                                                      "xrange; the 2to3 tool does both) and run the check again")


@pytest.mark.parametrize("edits,message", [
    ([("return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]", "return loss, dWxh, dWhh, dWhy, dbh, dby")],
     "lossFun on a random problem (T=6 H=5 V=7 seed 0) returned a tuple of 6; min-char-rnn's lossFun returns 7 values: "
     "loss, dWxh, dWhh, dWhy, dbh, dby, h_last"),
    ([("return loss, dWxh,", "return loss, dWxh.T,")],
     "lossFun on a random problem (T=6 H=5 V=7 seed 0): dWxh has shape (7, 5); it must be (5, 7), the shape of Wxh"),
    ([(TANH_MC, "dhraw = (1 - hs[t] * hs[t]) * dh / 0.0")],
     "lossFun on a random problem (T=6 H=5 V=7 seed 0): dWxh holds NaN or inf on a small random problem (T=6 H=5 V=7 "
     "seed 0); print the values your code computes step by step to find where they first appear"),
    ([("dy[targets[t]] -= 1", "dy[targets[t] + 1000] -= 1")],
     "lossFun on a random problem (T=6 H=5 V=7 seed 0) raised IndexError: index 1000 is out of bounds for axis 0 with "
     "size 7; the traceback above is from your code"),
])
def test_a_wrong_return_nan_or_exception_names_the_problem_and_the_fix(box, tmp_path, edits, message):
    result = check(box, write(tmp_path, MC, edits))
    assert (result.status, result.exit_code) == ("error", 2)
    assert result.error["message"].startswith(message), result.error["message"]
    if "raised" in message:
        assert 'my_rnn.py", line 41, in lossFun' in result.error["traceback"]


def test_tensors_made_in_float32_by_the_learners_code_are_named_as_the_cause(box, tmp_path):
    path = write(tmp_path, MCT, [("xs[t] = torch.zeros(vocab_size, 1, dtype=torch.float64)",
                                  "xs[t] = torch.zeros(vocab_size, 1)")])
    result = check(box, path)
    assert result.error["message"].endswith("double != float; the traceback above is from your code; the check hands "
                                            "your code float64 arrays: make the ones it creates float64 too")


def test_a_skeleton_is_skipped_beside_written_code_and_refused_alone(box, tmp_path):
    skeleton = '''

def lstm_forward(x, h0, Wx, Wh, b):
    h, cache = None, None
    pass
    return h, cache


def lstm_backward(dh, cache):
    dx, dh0, dWx, dWh, db = None, None, None, None, None
    return dx, dprev_h, dWx, dWh, db
'''
    rnn = (FIXTURES / CS).read_text().split("def sigmoid")[0]
    path = tmp_path / "rnn_layers.py"
    path.write_text(rnn + skeleton)
    result = check(box, path)
    assert result.status == "pass"
    assert [(i.function, i.status) for i in result.implementations] == [
        (RNN_STEP, "pass"), (RNN_SEQ, "pass"), (LSTM_SEQ, "not written")]
    alone = check(box, path, "lstm_forward")
    assert alone.exit_code == 2
    assert alone.error["message"] == "lstm_forward returned only None: write it first (a skeleton has nothing to check)"


def test_each_implementation_is_checked_on_its_own_whatever_its_neighbours_do(box, tmp_path):
    rnn = (FIXTURES / CS).read_text().split("def sigmoid")[0]
    path = tmp_path / "rnn_layers.py"
    # the course does the LSTM with autograd: a forward and no backward
    path.write_text(rnn + "\n\ndef lstm_forward(x, h0, Wx, Wh, b):\n    return x, None\n")
    result = check(box, path)
    assert (result.status, result.exit_code) == ("pass", 0), str(result)
    assert [(i.function, i.status) for i in result.implementations] == [
        (RNN_STEP, "pass"), (RNN_SEQ, "pass"), ("lstm_forward", "no partner")]
    assert "lstm_forward(x, h0, Wx, Wh, b): not checked: lstm_forward needs its partner lstm_backward" in str(result)
    # one implementation raises: the others' results stand beside its traceback
    path.write_text(rnn.replace("    dtanh = (1 - next_h ** 2) * dnext_h", "    dtanh = (1 - next_h ** 2) * dnext_h\n"
                                "    assert dtanh.ndim == 3"))
    result = check(box, path)
    assert (result.status, result.exit_code) == ("error", 2)
    assert [(i.function, i.status) for i in result.implementations] == [(RNN_STEP, "error"), (RNN_SEQ, "error")]
    path.write_text((FIXTURES / MC).read_text().replace("def lossFun", "def rnn_forward(x, h0, Wx, Wh, b):\n"
                                                        "    raise ValueError('not yet')\n\n\n"
                                                        "def rnn_backward(dh, cache):\n    return None\n\n\n"
                                                        "def lossFun"))
    result = check(box, path)
    assert (result.status, result.exit_code) == ("error", 2)
    assert [(i.function, i.status) for i in result.implementations] == [(RNN_SEQ, "error"), ("lossFun", "pass")]
    text = str(result)
    assert "rnn_forward(x, h0, Wx, Wh, b) / rnn_backward(dh, cache): could not be checked: rnn_forward / " \
           "rnn_backward on a random problem" in " ".join(text.split())
    assert "  | ValueError: not yet" in text and "dWhh      " in text
    assert text.splitlines()[-1].startswith("error: rnn_forward / rnn_backward: rnn_forward / rnn_backward on a "
                                            "random problem")


def test_a_partner_imported_from_the_learners_other_file_completes_the_pair(box, tmp_path):
    """A course's notebook split into rnn_forward.py and rnn_backward.py."""
    text = (FIXTURES / CO).read_text()
    forward, backward = text.split("def rnn_cell_backward")[0], "def rnn_cell_backward" + text.split(
        "def rnn_cell_backward")[1].split("def lstm_cell_forward")[0]
    (tmp_path / "rnn_forward.py").write_text(forward)
    alone = tmp_path / "rnn_backward.py"
    alone.write_text("import numpy as np\n\n\n" + backward)
    result = check(box, alone)
    assert result.exit_code == 2 and result.error["message"].startswith(
        "rnn_cell_backward needs its partner rnn_cell_forward, which the file does not define (define it there, or "
        "import it from the file that does)")
    alone.write_text("import numpy as np\nfrom rnn_forward import *\n\n\n" + backward)
    result = check(box, alone)
    assert result.status == "pass", str(result)
    assert [i.function for i in result.implementations] == [CO_RNN_STEP, CO_RNN_SEQ]
    together = tmp_path / "together.py"   # a file of imports alone is checked on what it imports
    together.write_text("from rnn_forward import *\nfrom rnn_backward import *\n")
    result = check(box, together)
    assert result.status == "pass" and [i.function for i in result.implementations] == [CO_RNN_STEP, CO_RNN_SEQ]


def test_a_function_is_matched_by_its_arguments_not_its_name_alone(box, tmp_path):
    """Coursera's rnn_forward(x, a0, parameters) is not CS231n's; the Dinosaurus assignment's
    rnn_forward(X, Y, a0, parameters, vocab_size) is neither, and says so beside what is checked."""
    path = tmp_path / "my_rnn.py"
    path.write_text((FIXTURES / MC).read_text() + "\n\ndef rnn_forward(X, Y, a0, parameters, vocab_size=27):\n"
                    "    return X, None\n\n\ndef rnn_backward(X, Y, parameters, cache):\n    return None\n")
    result = check(box, path)
    assert (result.status, result.exit_code) == ("pass", 0), str(result)
    assert [(i.function, i.status) for i in result.implementations] == [
        ("lossFun", "pass"), ("rnn_forward", "not a shape"), ("rnn_backward", "not a shape")]
    assert result.implementations[1].notes == [
        "rnn_forward(X, Y, a0, parameters, vocab_size) is named like CS231n's rnn_forward(x, h0, Wx, Wh, b) or "
        "Coursera's rnn_forward(x, a0, parameters), but takes other arguments"]
    alone = check(box, path, "rnn_forward")
    assert alone.exit_code == 2 and alone.error["message"] == result.implementations[1].notes[0]


def test_a_class_is_driven_where_its_method_has_a_shape_and_otherwise_named_with_its_adapter(box, tmp_path):
    result = check(box, FIXTURES / "minchar_class.py", "lossFun")
    assert result.status == "pass" and result.implementations[0].signature == "CharRNN.lossFun(inputs, targets, hprev)"
    result = check(box, FIXTURES / "layer_classes.py")
    assert result.exit_code == 2
    assert result.error["message"] == (
        "layer_classes.py defines class RNN (__init__(Wx, Wh, b), forward(x, h_prev), backward(dh_next)); class TimeRNN "
        "(__init__(Wx, Wh, b), forward(xs, h0), backward(dhs)): the check cannot drive a class whose contract it does "
        "not know (what its constructor takes, what forward and backward return); add the adapter shown above around "
        "your class, and run again")
    assert result.error["output"].startswith("the adapter to add to layer_classes.py, in CS231n's shape")
    assert "    layer = TimeRNN(...)" in result.error["output"]
    assert str(result).splitlines()[0] == result.error["output"].splitlines()[0]


def test_a_lossFun_that_takes_its_sizes_or_weights_as_arguments_is_min_char_rnns(box, tmp_path):
    path = write(tmp_path, MC, [("def lossFun(inputs, targets, hprev):",
                                 "def lossFun(inputs, targets, hprev, vocab_size, Wxh, Whh, Why, bh, by):")])
    result = check(box, path)
    assert result.status == "pass", str(result)
    assert result.implementations[0].signature == "lossFun(inputs, targets, hprev, vocab_size, Wxh, Whh, Why, bh, by)"
    path = tmp_path / "ported.py"
    path.write_text((FIXTURES / "minchar_class.py").read_text().replace(
        "def lossFun(self, inputs, targets, hprev):", "def train(self, inputs, targets, vocab_size, h0):").replace(
        "self.vocab_size, 1", "vocab_size, 1").replace("hs[-1] = np.copy(hprev)", "hs[-1] = np.copy(h0)"))
    result = check(box, path)
    assert result.status == "pass", str(result)
    assert result.implementations[0].signature == "CharRNN.train(inputs, targets, vocab_size, h0)"


def test_float32_inside_code_that_returns_float64_passes_at_the_float32_bar_and_says_where(box, tmp_path):
    """A textbook keeps its hidden states in np.empty(..., dtype='f'): right to float32's round-off."""
    adapter = ("\n\ndef rnn_forward(x, h0, Wx, Wh, b):\n    layer = TimeRNN(Wx, Wh, b)\n"
               "    return layer.forward(x, h0).astype(np.float64), layer\n\n\n"
               "def rnn_backward(dh, cache):\n    dx = cache.backward(dh)\n    dWx, dWh, db = cache.grads\n"
               "    return dx, cache.dh, dWx, dWh, db\n")
    path = tmp_path / "time_layers.py"
    path.write_text((FIXTURES / "layer_classes.py").read_text() + adapter)
    result = check(box, path)
    (impl,) = result.implementations
    assert (result.status, impl.tolerance) == ("pass", 1e-5), str(result)
    assert 1e-10 < impl.outputs[0].error < 1e-6
    assert impl.notes == ["your code returned float64 arrays, but rounds to float32 inside (line 36: hs = "
                          "np.empty((N, T, H), dtype='f')): every value agrees to float32's round-off, so it is "
                          "checked against the float32 bar 1e-05; make those arrays float64 to be held to 1e-10"]
    path.write_text(path.read_text().replace("dtype='f'", "dtype='d'"))
    result = check(box, path)
    assert result.implementations[0].tolerance == 1e-10 and result.status == "pass"
    path.write_text(path.read_text().replace("dtype='d'", "dtype='f'").replace("dt @ Wh.T", "0.9 * dt @ Wh.T"))
    assert check(box, path).status == "fail"   # float32 inside never excuses a real mistake


def test_a_backward_that_changes_what_it_was_handed_is_told_so_by_name_though_its_gradients_are_right(box, tmp_path):
    """The bug report's case: right gradients, but the notebook's numeric check afterwards failed."""
    loop = "        dx[:, t, :], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t, :] + dprev_h, cache[t])"
    path = write(tmp_path, CS, [(loop, "        dh[:, t, :] += dprev_h\n" + loop.replace(" + dprev_h", ""))])
    result = check(box, path)
    assert (result.status, result.exit_code) == ("pass", 0)
    notes = {i.function: i.notes for i in result.implementations}
    assert notes[RNN_SEQ] == ["warning: your code changes arrays it was handed, in place: dh. The gradients above are "
                              "checked on what it returned, but a caller that uses it afterwards (a numeric gradient "
                              "check, the next step) sees other numbers: work on a copy (.copy()), or add with a + b, "
                              "not +="]
    assert notes[RNN_STEP] == [] and notes[LSTM_SEQ] == []
    path = write(tmp_path, MC, [("    return loss, dWxh,", "    Whh[...] *= 1.0001\n    return loss, dWxh,")])
    (impl,) = check(box, path).implementations
    assert impl.notes[0].startswith("warning: your code changes arrays it was handed, in place: Whh.")


def test_a_training_script_is_loaded_without_running_its_script_part(box, tmp_path):
    script = (FIXTURES / MC).read_text().split('if __name__ == "__main__":')[0]
    failing = tmp_path / "reads_its_data.py"
    failing.write_text(script.replace("hidden_size = 100", "data = open('input.txt').read()\nhidden_size = 100"))
    result = check(box, failing)
    assert result.status == "pass"
    assert result.notes == ["importing reads_its_data.py raised FileNotFoundError: [Errno 2] No such file or "
                            "directory: 'input.txt'; its imports, definitions and constants were loaded, not its "
                            "script part (left out: 6 statements (lines 5, 12-16), which set data, Wxh, Whh, Why, bh, "
                            "by)"]
    forever = tmp_path / "trains_forever.py"
    forever.write_text(script + "\nwhile True:\n    loss = lossFun([0], [1], np.zeros((hidden_size, 1)))\n")
    result = check(box, forever)
    assert result.status == "pass"
    loop = script.count(chr(10)) + 2
    assert result.notes == [f"trains_forever.py runs a loop at module level (line {loop}); its imports, definitions "
                            f"and constants were loaded, not its script part (left out: 6 statements (lines 11-15, "
                            f"{loop}), which set Wxh, Whh, Why, bh, by)"]


def test_the_loader_leaves_out_what_reads_its_script_part_and_says_so(box, tmp_path):
    """A port that loads a snapshot: Wxh = snapshot["Wxh"] calls nothing, but reads what was left out."""
    script = (FIXTURES / MC).read_text().split('if __name__ == "__main__":')[0]
    snapshot = ("import pickle\nsnapshot = pickle.load(open('model.p', 'rb'))\nWxh = snapshot['Wxh']\n"
                "chars = snapshot['chars']\n")
    path = tmp_path / "resumes.py"
    path.write_text(script + snapshot)
    result = check(box, path)
    assert result.status == "pass", str(result)
    assert result.notes[0].startswith("importing resumes.py raised FileNotFoundError")
    assert result.notes[0].endswith("which set Wxh, Whh, Why, bh, by, snapshot, chars)")
    path.write_text(script + "\nn_steps = Xtrain.shape[1]\nfor epoch in range(3):\n    pass\n")   # a notebook's Xtrain
    result = check(box, path)
    assert result.status == "pass" and "which set Wxh, Whh, Why, bh, by, n_steps, epoch)" in result.notes[0]
    path.write_text(script.replace("    xs, hs, ys, ps = {}, {}, {}, {}", "    xs, hs, ys, ps = {}, {}, {}, {}\n"
                                   "    assert len(chars) > 0") + snapshot)
    result = check(box, path)
    assert result.exit_code == 2
    assert result.error["message"].endswith("raised NameError: name 'chars' is not defined; the traceback above is "
                                            "from your code; chars is set by the script part of your file, which the "
                                            "check left out: set it inside the function, or from the arguments")


def test_code_that_never_returns_is_stopped_at_the_time_limit(tmp_path):
    path = write(tmp_path, MC, [("    # backward pass", "    while True:\n        pass\n    # backward pass")])
    with Sandbox(time_limit=1) as own:
        result = run_check(path, None, Options(time_limit=1), own)
    assert result.exit_code == 2
    assert result.error["message"] == ("lossFun on a random problem (T=6 H=5 V=7 seed 0) did not finish within 1 s (a "
                                       "loop that never ends?); --time-limit SECONDS gives it longer")


def test_code_that_ends_its_process_is_reported_with_what_it_printed(tmp_path):
    path = write(tmp_path, MC, [("    # backward pass", "    print('loss so far', loss)\n    import os\n    os._exit(3)\n"
                                                      "    # backward pass")])
    with Sandbox() as own:
        result = run_check(path, None, Options(), own)
    assert result.error["message"] == ("lossFun on a random problem (T=6 H=5 V=7 seed 0) ended the Python process "
                                       "running it (exit code 3); its last output is above")
    assert result.error["output"].startswith("loss so far ")
    assert str(result).startswith("loss so far ")


def test_a_worker_killed_between_requests_is_named_then_replaced():
    with Sandbox() as own:
        own.load(FIXTURES / MC)
        own.proc.kill()   # as the out-of-memory killer would, while no request is running
        own.proc.wait()
        with pytest.raises(LearnerError) as raised:
            own.load(FIXTURES / MC)
        assert raised.value.message.startswith("the Python process running your code ended (exit code -9) before "
                                               "loading min_char_rnn.py: ")
        assert own.load(FIXTURES / MC).functions


def test_float32_tensors_are_held_to_the_float32_bar_and_told_so(box, tmp_path):
    path = write(tmp_path, CST, [("dx = torch.zeros(N, T, D, dtype=dh.dtype)", "dx = torch.zeros(N, T, D)")])
    result = check(box, path, "rnn_backward")
    (impl,) = result.implementations
    assert impl.status == "pass" and impl.tolerance == 1e-5
    assert impl.notes[0].startswith("your code returned float32 arrays: checked against the float32 bar 1e-05")


def test_per_step_names_one_of_your_gradients_or_is_refused(box):
    result = check(box, FIXTURES / CS, "rnn_backward", per_step="dWx")
    (impl,) = result.implementations
    assert impl.shown == "dWx" and set(impl.per_step) == {"dWx", "dWh", "db"}
    assert all(row["error"] < 1e-12 for row in impl.per_step["dWx"]["steps"])
    refused = check(box, FIXTURES / CS, "rnn_backward", per_step="dWhh")
    assert refused.error["message"] == ("--per-step dWhh: not a weight gradient of rnn_forward / rnn_backward; one of "
                                        "dWx, dWh, db")


def test_the_command_prints_pass_or_json_with_exit_codes_0_1_2(tmp_path, capsys):
    assert gradcheck.main(["--yours", f"{FIXTURES / MC}:lossFun"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "PASS"
    assert re.search(r"^  dWhh +\d\.\de-1\d  PASS$", out, re.M)
    assert gradcheck.main(["--yours", str(write(tmp_path, MC, [(DH_MC, "dh = np.dot(Why.T, dy)")])), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert (result["status"], result["exit_code"], result["error"]) == ("fail", 1, None)
    (impl,) = result["implementations"]
    assert [d["code"] for d in impl["diagnosis"]] == ["missing-dh-next"]
    assert {g["name"]: g["passed"] for g in impl["gradients"]} == {
        "dWxh": False, "dWhh": False, "dWhy": True, "dbh": False, "dby": True}
    assert [row["k"] for row in impl["per_step"]["dWhh"]["by_distance"]] == list(range(6))
    broken = tmp_path / "broken.py"
    broken.write_text("def lossFun(inputs, targets, hprev):\n    return 1 / 0\n")
    assert gradcheck.main(["--yours", str(broken)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "return 1 / 0" in captured.err
    assert lines[-1] == ("error: lossFun on a random problem (T=6 H=5 V=7 seed 0) raised ZeroDivisionError: division "
                         "by zero; the traceback above is from your code")
    assert gradcheck.main(["--yours", str(broken), "--layers", "2"]) == 2
    assert capsys.readouterr().err == ("error: --yours checks one layer in float64: leave out --layers, --dropout and "
                                       "--dtype\n")


def test_check_bptt_is_public_prints_the_report_and_returns_the_result(capsys):
    result = charrnn.check_bptt(f"{FIXTURES / MC}:lossFun", seq_length=3)
    assert result.exit_code == 0 and result.implementations[0].problems[0] == "T=3 H=5 V=7 seed 0"
    assert capsys.readouterr().out == str(result) + "\n"
    assert json.loads(json.dumps(result.to_json()))["implementations"][0]["function"] == "lossFun"
    assert "check_bptt" in charrnn.__all__


def test_importing_charrnn_does_not_import_torch():
    (proc,) = run_scripts(["-c", "import sys, charrnn, charrnn.model; print('torch' in sys.modules)"])
    assert proc.stdout.strip() == "False", proc.stderr
