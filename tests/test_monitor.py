import io
import re
import subprocess
import sys
from dataclasses import astuple

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.util import tensor_util
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from charrnn.config import compose
from charrnn.monitor import grad_flow
from charrnn.training import loop as trainer
from charrnn.backends.interface import Gradients, StepResult
from charrnn.monitor.dashboard import BOOKKEEPING, METRICS, SHOWN_FIRST, VAL_DIR, hparam_columns, trial_name
from charrnn.monitor import Monitor
from charrnn.training.rundir import register_resolvers, run_label, unique_dir
from tests.conftest import TINY, make_config

EVALS = [0, 10, 20]


def events_of(corpus, tmp_path, *overrides, log_dir=""):
    """A 20-step run evaluated at EVALS, and its TensorBoard events (of its val curves' run: log_dir=VAL_DIR)."""
    cfg = make_config([f"data.path={corpus}", *TINY, "train.max_iters=20", *overrides])
    run_dir = trainer.train(cfg, tmp_path / "run").run_dir
    return EventAccumulator(str(run_dir / log_dir), size_guidance={"images": 0, "scalars": 0}).Reload()


def test_val_is_a_run_of_its_own_drawn_on_trains_charts(corpus, tmp_path):
    """TensorBoard colours a curve by its run: val's curves are those of a second run, RUN/val, under
    the tags train's carry, so that each chart of loss or bits/char draws both in two colours."""
    cfg = make_config([f"data.path={corpus}", *TINY, "train.max_iters=20"])
    result = trainer.train(cfg, tmp_path / "runs" / "tiny")
    board = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs")).Reload()  # as TensorBoard reads it
    scalars = board.PluginRunToTagToContent("scalars")
    assert sorted(scalars) == ["tiny", f"tiny/{VAL_DIR}"]
    assert {"loss", "bpc"} <= scalars["tiny"].keys() & scalars[f"tiny/{VAL_DIR}"].keys()

    def curve(run):
        return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in board.Tensors(run, "loss")]

    val = curve(f"tiny/{VAL_DIR}")
    assert [step for step, _ in val] == EVALS and val[-1][1] == pytest.approx(result.val_loss)
    assert [step for step, _ in curve("tiny")] == [5, 10, 15, 20]   # train's, each log interval
    # nothing but val's curves in val's run: the samples, pictures and HPARAMS' row are the run's
    assert set(scalars[f"tiny/{VAL_DIR}"]) == {"loss", "bpc", "run/best_loss", "run/best_bpc"}
    assert {plugin for plugin in ("text", "images", "histograms", "hparams", "custom_scalars")
            if f"tiny/{VAL_DIR}" in board.PluginRunToTagToContent(plugin)} == set()


@pytest.mark.pictures
def test_a_default_run_writes_few_tags_a_first_page_and_one_gradient_flow_picture_per_evaluation(corpus, tmp_path):
    events = events_of(corpus, tmp_path)
    val_scalars = set(EventAccumulator(str(tmp_path / "run" / VAL_DIR)).Reload().Tags()["scalars"])
    assert val_scalars == {"loss", "bpc", *(tag for group, tag in METRICS if group == VAL_DIR)}
    scalars = set(events.Tags()["scalars"])
    assert scalars == {
        "loss", "loss_smooth", "bpc",
        "grad_norm/global", "grad_norm/global_clipped", "steps/clipped", "steps/skipped", "lr",
        "steps/clipped_fraction", "steps/skipped_fraction", "epoch",
        "throughput/chars_per_sec", "spectral_norm/Whh", "grad_flow/growth", "grad_flow/reach",
        *(f"param_grad_norm/{k}" for k in ("Wxh", "Whh", "Why", "bh", "by")),
        *(tag for group, tag in METRICS if group == ""),
    }
    assert len(scalars | val_scalars) <= 30
    scalars |= val_scalars   # what the charts below draw: a chart draws a tag of every run

    # the CUSTOM SCALARS page: every chart of the first category draws something, and together they
    # draw every curve but the per-parameter ones, the cumulative counts and the run's totals (HPARAMS'
    # metrics)
    content = events.PluginTagToContent("custom_scalars")
    assert content  # the layout is there
    layout = layout_pb2.Layout.FromString(events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    assert [c.title for c in layout.category] == ["training", "per parameter, and counts"]
    drawn = {}
    for category in layout.category:
        for chart in category.chart:
            drawn[chart.title] = {t for t in scalars if any(re.search(r, t) for r in chart.multiline.tag)}
            assert drawn[chart.title], chart.title
    first_page = set().union(*(drawn[c.title] for c in layout.category[0].chart))
    assert first_page == {t for t in scalars if not t.startswith(("param_grad_norm/", "run/"))} - {
        "steps/clipped", "steps/skipped"}
    assert set().union(*(drawn[c.title] for c in layout.category[1].chart)) == {
        t for t in scalars if t.startswith("param_grad_norm/")} | {"steps/clipped", "steps/skipped"}
    assert {"loss", "loss_smooth"} in drawn.values() and {"bpc"} in drawn.values()
    assert {"grad_norm/global", "grad_norm/global_clipped"} in drawn.values()

    # gradient flow: one picture per evaluation (and no per-lag curves), with its two summary curves
    pictures = events.Images("grad_flow/by_lag")
    assert [e.step for e in pictures] == EVALS
    assert Image.open(io.BytesIO(pictures[0].encoded_image_string)).size == (pictures[0].width, pictures[0].height)
    assert (pictures[0].width, pictures[0].height) == (960, 540)   # drawn by matplotlib
    assert [e.step for e in events.Scalars("grad_flow/growth")] == EVALS
    assert all(np.isfinite(e.value) for e in events.Scalars("grad_flow/growth"))
    assert all(e.value in range(8) for e in events.Scalars("grad_flow/reach"))  # a lag of seq_length 8


def test_hparams_has_the_same_columns_for_every_optimizer_and_no_bookkeeping(corpus, tmp_path):
    columns = list(hparam_columns())
    assert not set(BOOKKEEPING) & set(columns)
    assert {"optim.lr", "optim.momentum", "optim.nesterov", "optim.beta1", "optim.beta2", "optim.eps",
            "model.hidden_size", "train.clip_mode"} <= set(columns)
    events = events_of(corpus, tmp_path, "optim=sgd", "train.max_iters=10")
    content = events.PluginTagToContent("hparams")
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [h.name for h in experiment.hparam_infos] == columns
    assert sorted(h.name for h in experiment.hparam_infos if h.differs) == list(SHOWN_FIRST)  # what it shows first
    val_scalars = EventAccumulator(str(tmp_path / "run" / VAL_DIR)).Reload().Tags()["scalars"]
    assert {(m.name.group, m.name.tag) for m in experiment.metric_infos} == set(METRICS) <= {
        *(("", tag) for tag in events.Tags()["scalars"]), *((VAL_DIR, tag) for tag in val_scalars)}
    values = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info.hparams
    assert values["optim.name"].string_value == "sgd" and values["optim.momentum"].number_value == 0.9
    assert values["train.reset_state"].bool_value is False
    assert "optim.beta1" not in values  # Adam's, blank in an SGD run's row
    assert events.Scalars("run/steps")[-1].value == 10


@pytest.mark.parametrize("clip_mode,clipped_tags", [
    ("none", set()),
    ("norm", {"grad_norm/global_clipped", "steps/clipped"}),
    ("value", {"grad_norm/global_clipped", "steps/clipped", "param_grad_norm/Whh_clipped"}),
])
def test_clipped_norms_are_written_only_where_they_differ_from_the_norms(corpus, tmp_path, clip_mode, clipped_tags):
    events = events_of(corpus, tmp_path, f"train.clip_mode={clip_mode}", "train.grad_clip=0.05", "train.max_iters=10")
    scalars = set(events.Tags()["scalars"])
    assert {t for t in scalars if "clipped" in t and t != "param_grad_norm/Wxh_clipped"} >= clipped_tags
    assert not {"grad_norm/global_clipped", "steps/clipped", "param_grad_norm/Whh_clipped"} - clipped_tags & scalars
    if clip_mode != "none":  # a bound this tight clips every step
        assert [e.value for e in events.Scalars("steps/clipped")] == [5, 10]


def test_layers_and_recurrent_matrices_each_get_their_own_curves(tmp_path):
    """Gradients of two layers ((L, T) norms), and two recurrent matrices."""
    rng = np.random.default_rng(0)
    params = {name: rng.standard_normal(shape) for name, shape in
              {"Wxh": (4, 3), "Whh": (4, 4), "Whh_l1": (4, 4), "Why": (3, 4), "bh": (4,)}.items()}
    dh_norms = np.array([np.geomspace(1e-3, 1e-4, 8), np.full(8, 1e-3)])   # time order: layer 0 rises by lag
    with Monitor(tmp_path, 10, 0, 5, "norm") as monitor:
        monitor.evaluation(0, 1.0, "sample", params, Gradients(params, dh_norms), 1.0, 0.0)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"spectral_norm/Whh", "spectral_norm/Whh_l1"} <= scalars and "spectral_norm/Why" not in scalars
    assert events.Scalars("grad_flow/growth_l0")[0].value == pytest.approx(10 ** (6.5 / 7))  # far end: lags 6, 7
    assert events.Scalars("grad_flow/growth_l1")[0].value == pytest.approx(1)
    assert len(events.Images("grad_flow/by_lag")) == 1


@pytest.mark.pictures
def test_growth_and_reach_read_the_curve_by_lag():
    flat_after_4 = np.minimum(np.geomspace(1, 2 ** 7, 8), 2 ** 4)        # doubles each lag up to lag 4
    assert astuple(grad_flow.summarize(flat_after_4)) == (pytest.approx(16), 4)
    noisy = np.minimum(np.geomspace(1, 2 ** 15, 16), 2 ** 4) * np.r_[np.ones(12), 1.3, 0.8, 1, 1]
    assert astuple(grad_flow.summarize(noisy)) == (pytest.approx(16), 4)    # the far end is a median
    exploding = np.geomspace(1, 1e6, 64)      # the median of lags 48..63 is at lag 55.5; 90% of it, 49.95
    assert grad_flow.summarize(exploding).reach == 50
    assert grad_flow.summarize(exploding).growth == pytest.approx(1e6 ** (55.5 / 63))
    assert grad_flow.summarize(np.geomspace(1, 0.5, 8)).reach == 0
    assert grad_flow.summarize(np.array([1.0, np.inf])) is None
    assert grad_flow.summarize(np.array([1.0, 0.0])) is None
    # time order in, lag order out; a 1-D curve is one layer
    np.testing.assert_array_equal(grad_flow.by_lag(np.array([1.0, 2.0, 3.0])), [[3.0, 2.0, 1.0]])
    picture = grad_flow.picture(np.array([[1.0, np.nan, 2.0]]), step=5)   # a blown-up value is left out
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3


def test_sparkline_draws_a_log_scale_between_the_ends():
    assert grad_flow.sparkline(np.array([1e-3, 1e-2, 1e-1, 1.0])) == "1.00e-03 ▁▃▆█ 1.00e+00"
    assert grad_flow.sparkline(np.full(3, 0.5)) == "5.00e-01 ▁▁▁ 5.00e-01"
    assert "not finite" in grad_flow.sparkline(np.array([1.0, np.nan]))
    assert len(grad_flow.sparkline(np.geomspace(1, 2, 300)).split()[1]) == 64


def test_run_names_carry_the_overrides_or_the_name():
    assert run_label(None, []) == "default"
    assert run_label(None, ["optim=sgd", "optim.lr=1.0"]) == "optim-sgd+optim.lr-1.0"
    assert run_label("baseline", ["optim=sgd"]) == "baseline"
    assert run_label(None, ["data.path=/home/me/corpora/input.txt", "name=x"]) == "data.path-input.txt"
    assert run_label(None, ["prime='a b'"]) == "prime-a_b"
    assert len(run_label(None, [f"seed={'1' * 300}"])) == 100
    many = [f"train.option_{i}=value" for i in range(10)]
    assert run_label(None, many) == "+".join(o.replace("=", "-") for o in many[:4])  # whole overrides only


def test_the_run_directory_pattern_reads_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    register_resolvers()
    cfg = compose("train", ["optim=sgd", "train.max_iters=5"], return_hydra_config=True)
    assert re.fullmatch(r"runs/optim-sgd\+train.max_iters-5/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", cfg.hydra.run.dir)
    assert cfg.hydra.run.dir == cfg.hydra.run.dir  # asked again, the same directory


def test_runs_started_at_once_never_share_a_directory(tmp_path):
    claim = f"from charrnn.training.rundir import unique_dir; print(unique_dir({str(tmp_path / 'run')!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", claim], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    got = sorted(p.communicate()[0].strip() for p in procs)
    assert got == [str(tmp_path / name) for name in ("run", "run-2", "run-3")]
    assert unique_dir(str(tmp_path / "run")) == str(tmp_path / "run-4")


def test_under_a_clock_budget_the_bar_counts_the_budget_s_seconds(tmp_path):
    """train.max_seconds=300 (the 5-minute presets): the bar's end is the budget, fixed, and it shows the
    training seconds spent and left of it, the step among its figures; a step total guessed from the pace
    would move with every evaluation."""
    result = StepResult(1.0, (), {"Whh": 1.0}, {"Whh": 1.0}, skipped=False)
    with Monitor(tmp_path / "resumed", 20000, 100, 10, "norm", max_seconds=300.0, train_seconds=100.0) as monitor:
        assert "100.0/300 s of training, 200.0 s left" in str(monitor.bar)
        for step in range(100, 110):
            monitor.step(step, result, 1e-3, 64, 0.5)
        assert monitor.bar.total == 300.0 and monitor.bar.n == pytest.approx(105.0)
        assert "105.0/300 s of training, 195.0 s left" in str(monitor.bar) and "step=110" in str(monitor.bar)
        for step in range(110, 500):
            monitor.step(step, result, 1e-3, 64, 0.5)
        assert monitor.bar.total == 300.0 and monitor.bar.n == pytest.approx(300.0)  # never past its end
        assert "300.0/300 s of training, 0.0 s left" in str(monitor.bar)
    with Monitor(tmp_path / "steps", 50, 0, 10, "norm") as monitor:
        monitor.step(0, result, 1e-3, 64, 0.5)                # no clock: a bar of steps
        assert monitor.bar.total == 50 and monitor.bar.n == 1


def clipped_step(clipped: bool) -> StepResult:
    return StepResult(1.0, (), {"Whh": 2.0}, {"Whh": 1.0 if clipped else 2.0}, skipped=False)


SKIPPED = StepResult(float("nan"), (), {"Whh": float("nan")}, {"Whh": float("nan")}, skipped=True,
                     cause="loss")


def test_clipping_and_skipping_show_as_the_share_of_each_log_interval_and_as_counts(tmp_path):
    """Interval one: 2 of the 4 updates clipped, 1 of the 5 steps skipped; interval two: none."""
    steps = [clipped_step(True), clipped_step(True), SKIPPED, clipped_step(False), clipped_step(False),
             *[clipped_step(False)] * 5]
    with Monitor(tmp_path, 10, 0, 5, "norm") as monitor:
        for step, result in enumerate(steps):
            monitor.step(step, result, 1e-3, 64, 0.01)
    events = EventAccumulator(str(tmp_path)).Reload()

    def curve(tag):
        return [(e.step, e.value) for e in events.Scalars(tag)]

    assert curve("steps/clipped_fraction") == [(5, 0.5), (10, 0.0)]
    assert curve("steps/skipped_fraction") == [(5, pytest.approx(0.2)), (10, 0.0)]
    assert curve("steps/clipped") == [(5, 2), (10, 2)] and curve("steps/skipped") == [(5, 1), (10, 1)]


def test_the_bar_shows_the_epoch_the_smoothed_loss_by_name_and_the_last_evaluation(tmp_path):
    params = {"Whh": np.eye(4), "Why": np.ones((3, 4))}
    with Monitor(tmp_path, 100, 0, 5, "norm") as monitor:
        monitor.evaluation(0, 4.0, "s", params, Gradients(params, np.ones(8)), 4.0, 0.0)
        for step in range(5):
            monitor.step(step, clipped_step(False), 1e-3, 64, 0.01, epoch=0.25 * (step + 1))
        assert "epoch=1.25" in monitor.bar.postfix and "smoothed_loss=1.000" in monitor.bar.postfix
        assert " loss=" not in f" {monitor.bar.postfix}"
        monitor.evaluation(5, 2.0, "s", params, Gradients(params, np.ones(8)), 2.0, 1.0)
        assert f"val_bpc={2.0 / np.log(2):.3f}" in monitor.bar.postfix   # at once, not at the next interval
    assert [(e.step, e.value) for e in EventAccumulator(str(tmp_path)).Reload().Scalars("epoch")] == [(5, 1.25)]


def text_cards(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0}).Reload()
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in events.Tensors(f"{tag}/text_summary")]


def test_text_shows_the_config_and_command_and_each_sample_with_its_settings(tmp_path):
    params = {"Whh": np.eye(4), "Why": np.ones((3, 4))}
    config = {"model": {"hidden_size": 16}, "train": {"seq_length": 8}}
    with Monitor(tmp_path, 100, 0, 5, "norm", config=config, command="python train.py model.hidden_size=16") as monitor:
        monitor.evaluation(0, 4.0, "ab ```c", params, Gradients(params, np.ones(8)), 4.0, 0.0,
                           sample_settings={"temperature": 1.0, "prime": "To be, or", "length": 7})
    [(step, card)] = text_cards(tmp_path, "config")
    assert step == 0 and "python train.py model.hidden_size=16" in card and "hidden_size: 16" in card
    [(step, card)] = text_cards(tmp_path, "sample")
    assert card.startswith("val 4.0000 nats/char · drawn with sample.py `temperature=1.0 'prime=\"To be, or\"' length=7`")
    assert card.endswith("\n````\nab ```c\n````")   # a fence the sample cannot close


def test_hparams_rows_of_a_sweep_are_named_by_their_job_and_whole_numbers_read_as_written(corpus, tmp_path):
    events = events_of(corpus, tmp_path, "model=gru", "train.max_iters=10")
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.group_name == ""   # TensorBoard's name for it: its path under --logdir
    assert start.hparams["model.hidden_size"].string_value == "16"
    assert start.hparams["model.cell"].string_value == "gru" and start.hparams["model.num_layers"].string_value == "1"
    assert start.hparams["optim.lr"].number_value == pytest.approx(6e-3)
    # the Trial ID column shows about 16 characters: the jobs of one sweep differ in them
    sweep = tmp_path / "runs" / "multirun" / "2026-11-24_12-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    jobs = [trial_name(sweep / f"{n}_optim={o}") for n, o in ((0, "adam"), (1, "sgd"))]
    assert jobs[0] == "0_optim=adam in multirun/2026-11-24_12-00-00" and jobs[0][:16] != jobs[1][:16]


@pytest.mark.pictures
@pytest.mark.parametrize("layers", [1, 3])
def test_the_gradient_flow_picture_labels_each_tick_once_and_keeps_its_legend_off_the_curves(layers):
    flat = np.array([1.52e-4, 1.49e-4, 1.55e-4, 1.61e-4, 1.58e-4, 1.50e-4, 1.63e-4, 1.57e-4])  # within 10%
    fig = grad_flow.figure(np.tile(flat, (layers, 1)) * np.arange(1, layers + 1)[:, None], step=5)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels
    if layers > 1:
        legend, axes = fig.legends[0].get_window_extent(), ax.get_tightbbox()
        assert legend.y1 <= axes.y0      # wholly below the axes and their tick labels
        assert re.fullmatch(r"layer 1: [\d.]+x, reach \d", fig.legends[0].get_texts()[1].get_text())
