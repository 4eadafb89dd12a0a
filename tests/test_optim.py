import dataclasses
import math

import numpy as np
import pytest
import torch

from charrnn import optim
from charrnn.errors import UserError
from charrnn.optim import AdagradConfig, AdamConfig, SGDConfig
from charrnn.optim import clip_gradients, flat_buffer, grad_norms, make_optimizer
from tests.conftest import REPO, make_config

OPTIMIZERS = [
    (AdagradConfig(name="adagrad", lr=0.1, eps=1e-10), lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10)),
    (SGDConfig(name="sgd", lr=0.05, momentum=0.0, nesterov=False), lambda p: torch.optim.SGD(p, lr=0.05)),
    (SGDConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=False),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    (SGDConfig(name="sgd", lr=0.05, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    (AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
]


@pytest.mark.parametrize("cfg,make_torch", OPTIMIZERS, ids=lambda c: getattr(c, "name", ""))
def test_optimizer_updates_match_torch_optim(cfg, make_torch):
    rng = np.random.default_rng(0)
    flat, params = flat_buffer({"a": np.empty((3, 4)), "b": np.empty(5)})
    flat[...] = rng.standard_normal(flat.size)
    flat_grads, grads = flat_buffer(params)
    torch_params = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = make_optimizer(cfg, params)
    torch_opt = make_torch(list(torch_params.values()))
    for step in range(6):
        for k, g in grads.items():
            g[...] = rng.standard_normal(g.shape)
            torch_params[k].grad = torch.tensor(g.copy())
        torch_opt.step()
        opt.step(flat, flat_grads, cfg.lr)
        for k in params:
            np.testing.assert_allclose(params[k], torch_params[k].detach().numpy(), rtol=1e-14, atol=1e-15)


def test_optimizer_state_round_trips():
    rng = np.random.default_rng(1)
    cfg = AdamConfig(name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
    p = rng.standard_normal(4)
    opt = make_optimizer(cfg, {"a": p})
    opt.step(p, rng.standard_normal(4), cfg.lr)
    restored = make_optimizer(cfg, {"a": p})
    restored.load_state_dict(opt.state_dict())
    assert restored.step_count == 1
    assert set(opt.state_dict()) == {"step", "exp_avg/a", "exp_avg_sq/a"}
    g = rng.standard_normal(4)
    other = p.copy()
    opt.step(p, g, cfg.lr)
    restored.step(other, g, cfg.lr)
    assert np.array_equal(p, other)


@pytest.mark.parametrize("scale", [0.01, 100.0])
def test_norm_clipping_matches_torch(scale):
    rng = np.random.default_rng(2)
    grads = {"a": rng.standard_normal((4, 3)) * scale, "b": rng.standard_normal(6) * scale}
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g.copy())
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm=1.0)
    before = math.sqrt(sum(n * n for n in grad_norms(grads).values()))
    assert before == pytest.approx(float(torch_norm), rel=1e-14)
    flat, views = flat_buffer(grads)
    for k, g in grads.items():
        views[k][...] = g
    clip_gradients(flat, "norm", 1.0, before)
    for t, g in zip(tensors, views.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-15, atol=0)


def test_value_clipping_matches_torch_and_none_leaves_gradients():
    rng = np.random.default_rng(3)
    g = rng.standard_normal((5, 5)) * 10
    t = torch.zeros(5, 5, dtype=torch.float64, requires_grad=True)
    t.grad = torch.tensor(g.copy())
    torch.nn.utils.clip_grad_value_([t], clip_value=5.0)
    clipped = g.copy()
    clip_gradients(clipped, "value", 5.0, float(np.linalg.norm(g)))
    assert np.array_equal(clipped, t.grad.numpy())
    untouched = g.copy()
    clip_gradients(untouched, "none", 5.0, float(np.linalg.norm(g)))
    assert np.array_equal(untouched, g)


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_an_optimizers_row_checks_every_number_it_has_and_its_docs_name_it(name):
    """Every numeric key of the optimizer's config has its range in the row (a key added to the dataclass
    alone would go unchecked), and docs/training.md's table of config groups names the optimizer."""
    kind = optim.OPTIMIZERS[name]
    numeric = {f.name for f in dataclasses.fields(kind.config) if f.type in (float, int, "float", "int")}
    assert set(kind.ranges) == numeric
    lines = (REPO / "docs" / "training.md").read_text().splitlines()
    row = next(line for line in lines if line.startswith("| `optim`"))
    assert f"`{name}`" in row


def test_each_optimizers_own_ranges_and_check_refuse_in_one_line():
    base = ["optim=sgd", "optim.momentum=0.9"]
    with pytest.raises(UserError, match=r"^optim.momentum must not be negative, got -0.5$"):
        make_config([*base, "optim.momentum=-0.5"])
    with pytest.raises(UserError, match=r"^optim.nesterov=true needs momentum: set optim.momentum above 0"):
        make_config(["optim=sgd", "optim.momentum=0", "optim.nesterov=true"])
    with pytest.raises(UserError, match=r"^optim.beta2 must be in \[0, 1\), got 1.0$"):
        make_config(["optim=adam", "optim.beta2=1.0"])
    assert make_config(["optim=adagrad", "optim.eps=1e-10"]).optim.eps == 1e-10
