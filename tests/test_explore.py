"""python -m charrnn.explore and Model.explore: the page's data are the API's, the page is whole and offline,
the unit ranking finds a unit built to track quotes, and the look-back sizes are autograd's."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

import charrnn
from charrnn.explore import units
from charrnn.explore.lookback import lookback
from charrnn import cells
from charrnn.explore.page import claim, dequantize, shown_range
from charrnn.explore.trace import trace
from charrnn.model import init_params, spec_of, to_torch
from tests.conftest import HANG, assert_user_error, make_config, run_scripts
from tests.test_api import CELLS, TEXT, model_overrides, tiny_checkpoint
from tests.test_parallel_cells import sequential_layers


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    return {cell: tiny_checkpoint(root / cell, cell) for cell in CELLS}


class Page(HTMLParser):
    """The page's tags, its JSON and its value blocks."""

    def __init__(self, html: str):
        super().__init__()
        self.tags, self.blocks, self._open = [], {}, None
        self.feed(html)
        self.close()
        self.meta = json.loads(self.blocks.pop("meta"))

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = dict(attrs).get("id") if tag == "script" else None

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open:
            self.blocks[self._open] = self.blocks.get(self._open, "") + data


@pytest.mark.parametrize("cell", CELLS)
def test_page_data_are_the_apis(runs, tmp_path, cell):
    m = charrnn.load(runs[cell])
    path = m.explore(TEXT * 2, tmp_path / "page.html", lookback_positions=10, lookback_lags=6)
    page = Page(path.read_text(encoding="utf-8"))
    meta, T = page.meta, len(TEXT) * 2
    assert "".join(meta["symbols"][i] for i in meta["ids"]) == TEXT * 2
    score, predictions, layers = m.score(TEXT * 2), m.predict(TEXT * 2, k=5), m.trace(TEXT * 2)
    assert meta["loss"][0] is None
    np.testing.assert_allclose(meta["loss"][1:], score.losses, atol=5e-4)
    top = np.array(meta["top"]).reshape(T, 5)
    assert [[meta["symbols"][i] for i in row] for row in top] == predictions.chars
    np.testing.assert_allclose(np.array(meta["top_p"]).reshape(T, 5) / 1000, predictions.probs, atol=5e-4)
    assert meta["quantities"] == list(layers[0])
    for layer, quantities in enumerate(layers):
        for q, values in quantities.items():
            quantity = next(found for found in cells.CELLS[m.config.model.cell].quantities if found.name == q)
            lo, hi = shown_range(quantity)
            scale = np.array(meta["scales"][layer][q]) if quantity.bounds is None else 1.0
            shown = dequantize(page.blocks[f"v-{layer}-{q}"], T, lo, hi) * scale
            exact = np.zeros_like(shown, bool)
            for unit, flat in meta["beyond"][layer].get(q, {}).items():
                for t, value in zip(flat[::2], flat[1::2]):
                    shown[t, int(unit)], exact[t, int(unit)] = value, True
            # one of 63 levels: within half a level of the value (c: of its unit's scale); beyond the
            # scale (c's 99th percentile), the value to 3 decimals
            assert np.all((np.abs(shown - values) <= (hi - lo) / 62 / 2 * scale + 1e-9)[~exact])
            np.testing.assert_allclose(shown[exact], values[exact], atol=5e-4)
            assert exact.sum() == (np.abs(values) > scale).sum()
    lb = meta["lookback"]
    assert (lb["positions"], lb["lags"], lb["seq_length"]) == (10, 6, 8) and len(lb["values"]) == 60
    assert lb["values"][:6] == [pytest.approx(lb["values"][0]), None, None, None, None, None]


def test_page_is_one_offline_file(tmp_path):
    text = TEXT.replace("ROMEO", "</script><b>")
    run = tiny_checkpoint(tmp_path / "run", "lstm", corpus_text=text * 40)
    html = charrnn.load(run).explore(text, tmp_path / "p.html", lookback_positions=5).read_text(encoding="utf-8")
    page = Page(html)
    assert [t for t, _ in page.tags].count("script") == 2 + 2 * 6   # the JSON, the code, a block per layer and quantity
    assert not [(t, a) for t, a in page.tags if "src" in a or "href" in a or t in ("link", "iframe", "img")]
    assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/|url\(|@import", html, re.I)
    assert "</script><b>" in "".join(page.meta["symbols"][i] for i in page.meta["ids"])   # text cannot end a block
    assert page.meta["units"][0][0]["property"] == "inside quotes"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_page_runs_in_a_browser(tmp_path):
    """Headless Chromium opens the page, runs its script to the end and draws every character in a unit's
    colours (an LSTM, whose c has per-unit scales, of a corpus without quotes, whose page leaves them out)."""
    text = TEXT.replace('"', "").replace("(", "").replace(")", "").replace("[", "").replace("]", "")
    run = tiny_checkpoint(tmp_path / "run", "lstm", corpus_text=text * 40)
    path = charrnn.load(run).explore(text, tmp_path / "p.html", select=12, show="0/c/3")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'u'}",
                          "--virtual-time-budget=3000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=HANG).stdout
    assert re.search(r'<body data-ready-ms="\d+"', dom)
    spans = re.findall(r'<span [^>]*data-t="\d+"[^>]* style="background-color: rgb\(', dom)
    assert len(spans) == len(text)
    assert '<span id="showing">layer 0 · c (cell state) · unit 3' in dom
    assert "How far back it looks" in dom and "Interesting units" in dom and "Not shown: <b>inside quotes</b>" in dom


def planted_quote_unit(params, vocab, unit=2):
    """GRU unit `unit` of layer 0 flips between -1 and +1 at every double quote and holds between them:
    z = 1 (keep h) except at a quote, where z = 0 and r = 1, so h = n = tanh(0.5 - 3 h_prev)."""
    H, quote = 8, int(vocab.encode('"')[0])
    r, z, n = unit, H + unit, 2 * H + unit
    for row in (r, z, n):
        params["Wxh"][row] = 0
        params["Whh"][row] = 0
    params["bh"][[r, z, n]] = -20, 12, 0.5
    params["Wxh"][r, quote], params["Wxh"][z, quote] = 40, -24
    params["Whh"][n, unit] = -3
    params["bhn"][unit] = 0


def test_ranking_puts_a_unit_built_to_track_quotes_first(tmp_path):
    text = 'he said "so it is" and she "no" then\nhe "went home"\n' * 8
    run = tiny_checkpoint(tmp_path / "quotes", "gru", corpus_text=text, scale=1.0, edit=planted_quote_unit)
    m = charrnn.load(run)
    untrained = m.trace(text)   # the same network: nothing beats its own baseline
    rankings = {r.prop: r for r in units.rank_units(m.trace(text)[0], untrained[0], list(text), m.encode(text))}
    quotes = rankings["inside quotes"]
    assert (quotes.best[0].quantity, quotes.best[0].unit) == ("h", 2) and quotes.best[0].r > 0.95
    assert quotes.best[0].partial > 0.9 and quotes.untrained == pytest.approx(abs(quotes.best[0].partial))
    assert not quotes.strong
    assert rankings["inside brackets or parentheses"].present is False
    page = Page(m.explore(text, tmp_path / "p.html", lookback_positions=0).read_text(encoding="utf-8"))
    quotes = next(r for r in page.meta["units"][0] if r["property"] == "inside quotes")
    assert quotes["strong"] and quotes["untrained"] < 0.5 and quotes["best"][0]["partial"] > 0.9
    assert page.meta["start"] == {"layer": 0, "quantity": "h", "unit": 2, "mode": "unit"}
    assert page.meta["found"]["0/h/2"].startswith("tracks inside quotes (r = +0.9")
    # planted, not trained: its predictions are a random network's, and the page says so
    assert page.meta["verdict"]["text"].startswith("This model predicts the text no better than its untrained")


def untrained_edit(cfg_overrides=()):
    """An edit for tiny_checkpoint: the weights its config's own initialisation draws (a model at step 0)."""
    def edit(params, vocab):
        cfg = make_config(["model.hidden_size=8", "model.num_layers=2", "model.dtype=float64", *cfg_overrides])
        spec = spec_of(cfg.model, len(vocab))
        params.update(init_params(spec, cfg.model.init, cfg.model.init_std, cfg.seed, "float64", cfg.model.forget_bias))
    return edit


def test_the_page_and_the_model_name_the_parallel_cells_options(runs, tmp_path):
    m = charrnn.load(runs["minlstm+g+residual+layer"])
    assert repr(m).startswith("<charrnn minlstm (g, residual, layer norm), 2 x 8, ")
    page = Page(m.explore(TEXT, tmp_path / "p.html", lookback_positions=0).read_text(encoding="utf-8"))
    assert page.meta["about"].startswith("MINLSTM (g, residual, layer norm), 2 x 8 units, ")
    assert repr(charrnn.load(runs["mingru+off"])).startswith("<charrnn mingru, 2 x 8, ")


@pytest.mark.parametrize("cell", CELLS)
def test_an_untrained_model_claims_nothing_and_says_so(tmp_path, cell):
    text = TEXT * 6
    run = tiny_checkpoint(tmp_path / cell, cell, edit=untrained_edit(model_overrides(cell)))
    page = Page(charrnn.load(run).explore(text, tmp_path / "p.html", lookback_positions=0).read_text(encoding="utf-8"))
    meta = page.meta
    assert meta["verdict"]["level"] == "nothing" and meta["verdict"]["text"].startswith("Nothing is learned")
    assert meta["found"] == {}
    for layer in meta["units"]:
        by_name = {r["property"]: r for r in layer}
        assert not any(r["strong"] for r in layer)
        # what the current character decides is never a claim, whatever r says
        assert by_name["upper case"]["of_current_symbol"] and by_name["whitespace"]["of_current_symbol"]
        assert by_name["upper case"]["best"][0]["partial"] is None
        assert not by_name["position in the line"]["of_current_symbol"]


def test_properties_the_vocabulary_cannot_express_are_hidden_with_the_corpus_that_would_show_them(tmp_path):
    text = "the cat sat on the mat\nand so it went on\n" * 20
    run = tiny_checkpoint(tmp_path / "lower", "rnn", corpus_text=text)
    meta = Page(charrnn.load(run).explore(text, tmp_path / "p.html", lookback_positions=0)
                .read_text(encoding="utf-8")).meta
    shown = [r["property"] for r in meta["units"][0]]
    assert shown == ["position in the line", "start of a line", "whitespace"]
    hidden = {h["property"]: h["why"] for h in meta["inexpressible"]}
    assert set(hidden) == {"inside quotes", "inside brackets or parentheses", "upper case",
                           "a speaker's-name line (NAME: alone)"}
    assert "a novel" in hidden["inside quotes"] and "source code" in hidden["inside brackets or parentheses"]


def test_one_unit_heading_two_properties_is_named_with_how_alike_the_text_makes_them():
    chars = list("ROMEO:\nno more\n\nJULIET:\nand so\n" * 5)
    H = 3
    speaker = units.speaker_line(chars)
    layer = {"h": np.stack([speaker + 0.01 * np.arange(len(chars)) % 1, np.sin(np.arange(len(chars))),
                            np.cos(np.arange(len(chars)) / 3)], axis=1)}
    assert layer["h"].shape[1] == H
    ids = np.unique(chars, return_inverse=True)[1]
    rankings = {r.prop: r for r in units.rank_units(layer, layer, chars, ids)}
    speaker_ranking, upper = rankings["a speaker's-name line (NAME: alone)"], rankings["upper case"]
    assert speaker_ranking.best[0].unit == upper.best[0].unit == 0
    rho = units.correlations(speaker[:, None], units.upper_case(chars)[:, None])[0, 0]
    assert speaker_ranking.shared == [("upper case", pytest.approx(rho))] and rho > 0.5
    assert ("a speaker's-name line (NAME: alone)", pytest.approx(rho)) in upper.shared
    speaker_ranking.strong = True
    assert claim(speaker_ranking).endswith(f"; it also heads upper case: this text makes the two alike "
                                           f"(r = +{rho:.2f} between them)")


def test_text_properties():
    chars = list('a "b" (c [d]) e\nROMEO:\nHi\n\nJULIET:\nx: y\n')
    assert units.inside_quotes(chars)[:6].tolist() == [0, 0, 1, 1, 0, 0]
    assert units.inside_brackets(chars)[6:14].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert units.position_in_line(chars)[14:18].tolist() == [14, 15, 0, 1]
    lines = "".join(chars).split("\n")
    speaker = units.speaker_line(chars)
    starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
    # JULIET: after a blank line is a speaker's; ROMEO:, right after a line of text, is not
    assert [int(speaker[s]) for s in starts[:-1]] == [0, 0, 0, 0, 1, 0]
    r = units.correlations(np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 6.0]]), np.array([[0.0, 1], [1, 0], [2, 0]]))
    np.testing.assert_allclose(r, [[0, 1], [0, -np.sqrt(3) / 2]])   # a constant unit correlates with nothing
    ids = np.array([3, 3, 1, 5, 1, 3])
    x = np.stack([np.array([0.1, 0.1, 7.0, 2.0, 7.0, 0.1]), np.array([1.0, 2, 3, 4, 5, 6])], axis=1)
    rest = units.beyond_current_symbol(x, ids)
    assert (rest[:, 0] == 0).all()   # a function of the current symbol leaves nothing, not rounding's residue
    np.testing.assert_allclose(rest[:, 1], [-2, -1, -1, 0, 1, 3])


@pytest.mark.parametrize("cell", CELLS)
def test_lookback_is_autograds_gradient_of_each_loss_by_each_input(runs, cell):
    import torch

    m = charrnn.load(runs[cell])
    ids = m.encode(TEXT)
    params, spec = m.loaded.backend.export_params(), m.loaded.spec
    targets = np.array([1, 3, 7, 30, len(ids) - 1])
    sizes = lookback(params, spec, trace(params, spec, ids), targets, lags=9)
    if cells.CELLS[spec.cell].torch_twin:
        rnn, head = to_torch(spec, params)
        top_of = lambda x: head(rnn(x)[0])[0, -1]                                          # noqa: E731
    else:   # no stock twin: the paper's equations, written out in test_parallel_cells
        P = {k: torch.tensor(v) for k, v in params.items()}
        h0 = torch.zeros(spec.num_layers, 1, spec.hidden_size, dtype=torch.float64)

        def top_of(x):
            top, _ = sequential_layers(spec.cell, P, list(x.unbind(1)), h0, activation=spec.activation,
                                       residual=spec.residual, norm_kind=spec.norm)
            return top[-1][0] @ P["Why"].T + P["by"]
    for row, j in zip(sizes, targets):
        x = torch.nn.functional.one_hot(torch.tensor(ids[None, :j], dtype=torch.long), spec.vocab_size).double().requires_grad_()
        loss = torch.nn.functional.cross_entropy(top_of(x), torch.tensor(int(ids[j])))
        (grad,) = torch.autograd.grad(loss, x)
        expected = grad[0].norm(dim=1).flip(0).numpy()[:9]       # lag 1, 2, ... back from j
        np.testing.assert_allclose(row[:len(expected)], expected, rtol=2e-4, atol=1e-9)
        assert np.isnan(row[len(expected):]).all()


def test_explore_command_writes_the_page_into_the_run_directory(runs, tmp_path):
    unknown = tmp_path / "z.txt"
    unknown.write_text("Zed, he said", encoding="utf-8")
    good, bad, skipped = run_scripts(
        ["-m", "charrnn.explore", f"checkpoint={runs['rnn']}", "length=100", "lookback_positions=20"],
        ["-m", "charrnn.explore", f"checkpoint={runs['rnn']}", f"text={unknown}"],
        ["-m", "charrnn.explore", f"checkpoint={runs['rnn']}", f"text={unknown}", "skip_unknown=true"])
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == str(runs["rnn"] / "explore.html")
    meta = Page((runs["rnn"] / "explore.html").read_text(encoding="utf-8")).meta
    assert len(meta["ids"]) == 100 and "the first 100 characters of the validation split" in meta["about"]
    assert_user_error(bad, "the text has characters the checkpoint's vocabulary lacks: 'Z'; remove them, or pass "
                           "skip_unknown=true")
    assert skipped.stdout.strip() == str(runs["rnn"] / "explore_z.html")
