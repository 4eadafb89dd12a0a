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
DPI = 150            # 960 x 540 pixels for one layer: sharp when TensorBoard shows it at its actual size
LEGEND_COLUMNS = 2


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
    """(L, T) norms in lag order as an RGB image (height, width, 3) of uint8 (see figure)."""
    fig = figure(lagged, step)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()


def figure(lagged: np.ndarray, step: int):
    """The picture as a matplotlib Figure: one line per layer against lag, log scale, each layer's reach
    marked by a dotted line; growth and reach in the title (one layer) or in a legend below the axes, one
    entry per layer, so that it never covers a curve."""
    # Imported here: matplotlib takes a noticeable part of a second to load, and only evaluations draw.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = len(lagged)
    legend_rows = 0 if layers == 1 else -(-layers // LEGEND_COLUMNS)
    # Few, large letters: TensorBoard shows the picture about 350 pixels wide, scaled down from 960.
    # Fixed margins and legend place: matplotlib's automatic ones (tight_layout, loc="best") cost more
    # than the rest of the drawing. Each legend row adds its own height below the axes.
    width, axes_height, row_height = 6.4, 3.6, 0.3
    height = axes_height + legend_rows * row_height
    fig = Figure(figsize=(width, height), dpi=DPI)
    below = 0.58 + legend_rows * row_height  # inches under the axes: tick labels, the x label, the legend
    fig.subplots_adjust(left=0.17, right=0.97, bottom=below / height, top=1 - 0.4 / height)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lags = np.arange(lagged.shape[1])
    summaries = []
    for layer, norms in enumerate(lagged):
        shown = np.where(np.isfinite(norms) & (norms > 0), norms, np.nan)
        line, = ax.plot(lags, shown, linewidth=2)
        summary = summarize(norms)
        text = "not finite or zero" if summary is None else f"{summary.growth:.3g}x, reach {summary.reach}"
        summaries.append(text if layers == 1 else f"layer {layer}: {text}")
        line.set_label(summaries[-1])
        if summary is not None:
            ax.axvline(summary.reach, color=line.get_color(), linestyle=":", linewidth=1.5)
    if np.isfinite(lagged).any() and (lagged > 0).any():
        ax.set_yscale("log")
        # Plain-text labels: the default ones are typeset as TeX, which took most of the drawing time.
        ax.yaxis.set_major_formatter(_log_formatter())
        ax.yaxis.set_minor_formatter(_log_formatter(labelOnlyBase=False))
    ax.set_xlim(0, max(1, lags[-1]))
    ax.tick_params(labelsize=12)
    ax.yaxis.set_tick_params(which="minor", labelsize=9)
    ax.set_xlabel("lag (steps back from the chunk's end)", fontsize=13)
    ax.set_ylabel("|dL/dh|", fontsize=13)
    title = f"step {step}" + (f": {summaries[0]}" if layers == 1 else "")
    ax.set_title(title, fontsize=15, y=1.0)  # a given height skips a costly layout pass
    ax.grid(True, alpha=0.3)
    if layers > 1:
        fig.legend(loc="lower center", ncols=LEGEND_COLUMNS, fontsize=11, frameon=False,
                   bbox_to_anchor=(0.5, 0.0), handlelength=1.5)
    return fig


def _log_formatter(**kwargs):
    """matplotlib's plain-text log-axis labels (which ticks get one, as its default), with as few
    significant digits as keep the labels apart: two within most decades, more where a flat curve
    spans a few percent (two digits would read 1.5e-04 twice)."""
    from matplotlib.ticker import LogFormatter

    class DistinctLogFormatter(LogFormatter):
        digits = 2

        def format_ticks(self, values):
            self.set_locs(values)
            for self.digits in range(2, 6):
                labels = [self(value, i) for i, value in enumerate(values)]
                shown = [label for label in labels if label]
                if len(set(shown)) == len(shown):
                    break
            return labels

        def _num_to_string(self, x, vmin, vmax):
            return f"{x:.{self.digits - 1}e}"

    return DistinctLogFormatter(**kwargs)


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
