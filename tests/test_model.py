import numpy as np
import pytest
import torch

from charrnn.backends import numpy_backend
from charrnn.gradcheck.problem import random_problem, relative_error
from charrnn.cells import CELLS, with_twin
from charrnn.model import init_params, model_spec, param_shapes, spec_of, to_torch, zero_state
from tests.conftest import REPO, make_config

TOL = 1e-10


@pytest.mark.parametrize("cell", with_twin())
@pytest.mark.parametrize("layers,B,T", [(1, 3, 5), (2, 1, 1), (3, 2, 4)])
def test_numpy_equals_stock_torch_nn_through_to_torch(cell, layers, B, T):
    """torch.nn.RNN / LSTM / GRU, written by nobody here, settle what each cell means: the same loss,
    gradients of every weight and of the carried state, and final state."""
    V, H = 6, 4
    spec = model_spec(cell, V, H, layers)
    pb = random_problem(B, T, H, V, cell=cell, num_layers=layers)
    loss, grads, state_last = numpy_backend.loss_and_grads(pb.params, pb.inputs, pb.targets, pb.state, spec=spec)
    rnn, head = to_torch(spec, pb.params)
    assert isinstance(rnn, getattr(torch.nn, CELLS[cell].torch_twin))
    assert rnn.num_layers == layers and rnn.batch_first and head.out_features == V
    x = torch.nn.functional.one_hot(torch.as_tensor(pb.inputs), V).double()          # (B, T, V)
    state = tuple(torch.tensor(s, requires_grad=True) for s in pb.state)
    out, final = rnn(x, state if len(state) == 2 else state[0])
    t_loss = torch.nn.functional.cross_entropy(head(out).reshape(B * T, V), torch.as_tensor(pb.targets).reshape(-1))
    t_loss.backward()
    assert t_loss.item() == pytest.approx(loss, rel=1e-12)
    final = final if isinstance(final, tuple) else (final,)
    for ours, theirs in zip(state_last, final, strict=True):
        assert relative_error(ours, theirs.detach().numpy()) < TOL
    theirs = {"Why": head.weight.grad, "by": head.bias.grad}
    for layer in range(layers):
        names = spec.layer_names(layer)
        theirs[names["Wxh"]] = getattr(rnn, f"weight_ih_l{layer}").grad
        theirs[names["Whh"]] = getattr(rnn, f"weight_hh_l{layer}").grad
        theirs[names["bh"]] = getattr(rnn, f"bias_ih_l{layer}").grad
        b_hh = getattr(rnn, f"bias_hh_l{layer}").grad
        for gate in CELLS[cell].gates:
            block = CELLS[cell].gate_block(gate, H)
            if gate in CELLS[cell].recurrent_bias:       # the GRU's n: b_hh's block is bhn
                theirs[names[CELLS[cell].recurrent_bias[gate]]] = b_hh[block]
            else:                                         # elsewhere bh = b_ih + b_hh
                assert relative_error(b_hh[block].numpy(), grads[names["bh"]][block]) < TOL, gate
    assert theirs.keys() == grads.keys()
    for k in grads:
        assert relative_error(grads[k], theirs[k].numpy()) < TOL, k
    _, dstate = numpy_backend.stack_backward(pb.params, spec, numpy_backend.stack_forward(
        pb.params, spec, pb.inputs, pb.targets, pb.state)[1])
    for ours, leaf in zip(dstate, state, strict=True):
        assert relative_error(ours, leaf.grad.numpy()) < TOL


def test_a_one_layer_rnn_keeps_min_char_rnns_names_and_todays_initial_weights():
    spec = model_spec("rnn", 7, 5)
    params = init_params(spec, "uniform", 0.01, 3, "float64")
    assert list(params) == ["Wxh", "Whh", "Why", "bh", "by"]
    rng, bound = np.random.default_rng(3), 1 / np.sqrt(5)
    for name, shape in [("Wxh", (5, 7)), ("Whh", (5, 5)), ("Why", (7, 5)), ("bh", (5,)), ("by", (7,))]:
        np.testing.assert_array_equal(params[name], rng.uniform(-bound, bound, shape))


def test_layers_cells_and_the_forget_bias():
    shapes = param_shapes(model_spec("gru", 7, 5, 2))
    assert shapes == {"Wxh": (15, 7), "Whh": (15, 5), "Wxh_1": (15, 5), "Whh_1": (15, 5), "Why": (7, 5),
                      "bh": (15,), "bhn": (5,), "bh_1": (15,), "bhn_1": (5,), "by": (7,)}
    spec = model_spec("lstm", 7, 5, 2)
    plain = init_params(spec, "normal", 0.01, 0, "float32")
    shifted = init_params(spec, "normal", 0.01, 0, "float32", forget_bias=1.0)
    for bias in ("bh", "bh_1"):
        np.testing.assert_array_equal(shifted[bias] - plain[bias], np.repeat([0.0, 1.0, 0.0, 0.0], 5))
    assert [s.shape for s in zero_state(spec, 3, np.float32)] == [(2, 3, 5), (2, 3, 5)]
    assert [s.shape for s in zero_state(model_spec("gru", 7, 5, 3), 1, np.float64)] == [(3, 1, 5)]


@pytest.mark.parametrize("args,message", [(("cnn", 7, 5, 1), "unknown cell 'cnn'; one of rnn, lstm, gru"),
                                          (("rnn", 7, 5, 0), "must be positive")])
def test_a_bad_spec_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        model_spec(*args)


@pytest.mark.parametrize("group,option", [(conf.parent.name, conf.stem) for group in ("model", "experiment")
                                          for conf in sorted((REPO / "conf" / group).glob("*.yaml"))])
def test_every_model_and_experiment_option_composes_into_a_model(group, option):
    cfg = make_config([f"{group}={option}"])
    spec = spec_of(cfg.model, 65)
    assert spec.cell == cfg.model.cell and param_shapes(spec)["Why"] == (65, cfg.model.hidden_size)
