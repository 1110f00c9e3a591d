"""What every label plot shares: a small fixed-size figure, its PNG bytes, and the `Plot`
that carries them to the Dagster UI (embedded) and the dataset card (a file beside it).

Figures are made with `matplotlib.figure.Figure` and the Agg canvas, never pyplot: nothing
needs a display, and no figure outlives the call that drew it.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Small enough that a base64 PNG stays a few tens of KB in the run's metadata.
_SIZE_IN = (4.0, 3.0)
_DPI = 80
_MARGINS = {"left": 0.18, "right": 0.97, "bottom": 0.15, "top": 0.9}
CHANCE = 0.5
# Where the export writes the plots, beside the card that links them.
PLOTS_DIR = "plots"


@dataclass(frozen=True)
class Plot:
    name: str  # the file stem in the export's plots/ folder
    title: str
    caption: str
    png: bytes

    @property
    def file(self) -> str:
        """The plot's path in the export folder, relative to the card."""
        return f"{PLOTS_DIR}/{self.name}.png"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def new_figure(title: str) -> tuple[Figure, Axes]:
    """A figure with fixed margins: room for the title, tick labels of up to six digits and
    the axis labels. A layout engine ("constrained", "tight") would measure the text by
    drawing the figure once more, which doubles the time a plot of thousands of points takes."""
    figure = Figure(figsize=_SIZE_IN, dpi=_DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(**_MARGINS)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    axes.tick_params(labelsize=8)
    return figure, axes


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def markdown(plots: list[Plot], embed: bool) -> str:
    """Each plot as a markdown image with its caption below: embedded as a data URI (the
    Dagster UI), or linked to its file in the export folder (the dataset card)."""
    if not plots:
        return "_no data to plot yet_"
    return "\n\n".join(
        f"![{plot.title}]({plot.data_uri if embed else plot.file})\n\n_{plot.caption}_"
        for plot in plots
    )
