"""How far back through time the gradient reaches: |dL/dh_t| by lag, as two numbers, a picture and a line.

The backends measure |dL/dh_t| (L2 over H, averaged over the streams) at every step t of a chunk, one
row per layer: an (L, T) array (a 1-D one is one layer). Read back from the chunk's last step, lag
k = T-1-t: lag 0 gets only its own output's gradient, and each lag further back adds its own and
whatever arrives from the later steps, so the curve rises as far back as the gradient reaches and is
flat beyond. docs/monitoring.md says how to read it.
"""

from dataclasses import dataclass

import numpy as np

REACH_SHARE = 0.9  # reach: where the curve has made this share of its rise (on a log scale)
BARS = "▁▂▃▄▅▆▇█"


def by_lag(dh_norms: np.ndarray) -> np.ndarray:
    """(L, T) or (T,) norms in time order -> (L, T) in lag order (column k = k steps back from the end)."""
    return np.atleast_2d(np.asarray(dh_norms, np.float64))[:, ::-1]


@dataclass
class FlowSummary:
    growth: float  # |dL/dh| at the farthest lag over lag 0
    reach: int     # the first lag at which the curve has made REACH_SHARE of its rise; 0 if it never rises


def summarize(norms: np.ndarray) -> FlowSummary | None:
    """One layer's curve in lag order (T,); None unless every value is finite and positive (a blown-up
    chunk), where neither number means anything."""
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        return None
    logs = np.log(norms)
    rise = logs - logs[0]
    reach = int(np.argmax(rise >= REACH_SHARE * rise.max())) if rise.max() > 0 else 0
    return FlowSummary(growth=float(norms[-1] / norms[0]), reach=reach)


def picture(lagged: np.ndarray, step: int) -> np.ndarray:
    """(L, T) norms in lag order as an RGB image (height, width, 3) of uint8: one line per layer against
    lag, log scale, each layer's reach marked."""
    # Imported here: matplotlib takes a noticeable part of a second to load, and only evaluations draw.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=80)
    # Fixed margins and legend place: matplotlib's automatic ones (tight_layout, loc="best") cost more
    # than the rest of the drawing.
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.14, top=0.91)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lags = np.arange(lagged.shape[1])
    for layer, norms in enumerate(lagged):
        shown = np.where(np.isfinite(norms) & (norms > 0), norms, np.nan)
        label = f"layer {layer}" if len(lagged) > 1 else "|dL/dh|"
        line, = ax.plot(lags, shown, label=label, linewidth=1.5)
        summary = summarize(norms)
        if summary is not None:
            ax.axvline(summary.reach, color=line.get_color(), linestyle=":", linewidth=1)
            line.set_label(f"{label}: {summary.growth:.3g}x by lag {lags[-1]}, reach {summary.reach}")
    if np.isfinite(lagged).any() and (lagged > 0).any():
        ax.set_yscale("log")
    ax.set_xlim(0, max(1, lags[-1]))
    ax.set_xlabel("lag (steps back from the end of the chunk)")
    ax.set_ylabel("|dL/dh_t|")
    ax.set_title(f"gradient flow at step {step}", y=1.0)  # a given height skips a costly layout pass
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


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
