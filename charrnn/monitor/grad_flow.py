"""How far back through time the gradient reaches: |dL/dh_t| by lag, as two numbers, a picture and a line.

The backends measure |dL/dh_t| (L2 over H, averaged over the streams) at every step t of a chunk, one
row per layer: an (L, T) array (a 1-D one is one layer). Read back from the chunk's last step, lag
k = T-1-t: lag 0 gets only its own output's gradient, and each lag further back adds its own and
whatever arrives from the later steps, so the curve rises as far back as the gradient reaches and is
flat beyond. docs/monitoring.md says how to read it.
"""

from dataclasses import dataclass

import numpy as np

REACH_SHARE = 0.9  # reach: where the curve has made this share of its rise to the far end (log scale)
FAR_END = 0.25     # the far end: the median over this last share of the lags, steadier than one lag
BARS = "▁▂▃▄▅▆▇█"


def by_lag(dh_norms: np.ndarray) -> np.ndarray:
    """(L, T) or (T,) norms in time order -> (L, T) in lag order (column k = k steps back from the end)."""
    return np.atleast_2d(np.asarray(dh_norms, np.float64))[:, ::-1]


@dataclass
class FlowSummary:
    growth: float  # |dL/dh| at the far end over lag 0
    reach: int     # the first lag at which the curve has made REACH_SHARE of its growth; 0 if it does not grow


def summarize(norms: np.ndarray) -> FlowSummary | None:
    """One layer's curve in lag order (T,); None unless every value is finite and positive (a blown-up
    chunk), where neither number means anything. The far end is the median of the last FAR_END of the
    lags: a single lag's value is noisy, the median is where a curve that has gone flat lies."""
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        return None
    rise = np.log(norms) - np.log(norms[0])
    far = float(np.median(rise[-max(1, round(len(rise) * FAR_END)):]))
    reach = int(np.argmax(rise >= REACH_SHARE * far)) if far > 0 else 0
    return FlowSummary(growth=float(np.exp(far)), reach=reach)


def picture(lagged: np.ndarray, step: int) -> np.ndarray:
    """(L, T) norms in lag order as an RGB image (height, width, 3) of uint8: one line per layer against
    lag, log scale, each layer's reach marked by a dotted line, growth and reach in the title (one layer)
    or the legend."""
    # Imported here: matplotlib takes a noticeable part of a second to load, and only evaluations draw.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Few, large letters: TensorBoard shows the picture about 300 pixels wide.
    fig = Figure(figsize=(6.4, 3.6), dpi=80)
    # Fixed margins and legend place: matplotlib's automatic ones (tight_layout, loc="best") cost more
    # than the rest of the drawing.
    fig.subplots_adjust(left=0.17, right=0.97, bottom=0.16, top=0.89)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lags = np.arange(lagged.shape[1])
    summaries = []
    for layer, norms in enumerate(lagged):
        shown = np.where(np.isfinite(norms) & (norms > 0), norms, np.nan)
        line, = ax.plot(lags, shown, linewidth=2)
        summary = summarize(norms)
        text = "not finite or zero" if summary is None else f"{summary.growth:.3g}x, reach {summary.reach}"
        summaries.append(text if len(lagged) == 1 else f"layer {layer}: {text}")
        line.set_label(summaries[-1])
        if summary is not None:
            ax.axvline(summary.reach, color=line.get_color(), linestyle=":", linewidth=1.5)
    if np.isfinite(lagged).any() and (lagged > 0).any():
        ax.set_yscale("log")
        # Plain-text labels: the default ones are typeset as TeX, which took most of the drawing time.
        ax.yaxis.set_major_formatter(_plain_log_formatter())
        ax.yaxis.set_minor_formatter(_plain_log_formatter(labelOnlyBase=False))
    ax.set_xlim(0, max(1, lags[-1]))
    ax.tick_params(labelsize=12)
    ax.yaxis.set_tick_params(which="minor", labelsize=9)
    ax.set_xlabel("lag (steps back from the chunk's end)", fontsize=13)
    ax.set_ylabel("|dL/dh|", fontsize=13)
    title = f"step {step}" + (f": {summaries[0]}" if len(lagged) == 1 else "")
    ax.set_title(title, fontsize=15, y=1.0)  # a given height skips a costly layout pass
    ax.grid(True, alpha=0.3)
    if len(lagged) > 1:
        ax.legend(loc="upper left", fontsize=11)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def _plain_log_formatter(**kwargs):
    """matplotlib's plain-text log-axis labels (which ticks get one, as its default), with two digits:
    within a decade its own one digit repeats (3e-04 for 3.0 and 3.4e-04)."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:.1e}"

    return PlainLogFormatter(**kwargs)


def sparkline(values: np.ndarray, width: int = 64) -> str:
    """Positive values on a log scale as a line of block characters, between the first and last value;
    a long series is sampled down to `width` columns."""
    values = np.asarray(values, np.float64)[np.linspace(0, len(values) - 1, min(len(values), width)).astype(int)]
    if not np.isfinite(values).all() or (values <= 0).any():
        return f"{values[0]:.2e} (not finite or not positive) {values[-1]:.2e}"
    logs = np.log(values)
    span = (logs.max() - logs.min()) or 1.0
    levels = np.round((logs - logs.min()) / span * (len(BARS) - 1)).astype(int)
    return f"{values[0]:.2e} {''.join(BARS[i] for i in levels)} {values[-1]:.2e}"
