"""Reading rendered figures back for the plot tests: the PNG a figure writes, and the colour
at a data point of one of its axes."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np


def rendered_png(fig) -> np.ndarray:
    """The figure as written to a PNG (RGB floats, row 0 at the top)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi)
    buffer.seek(0)
    return plt.imread(buffer)[:, :, :3]


def pixel_at(png: np.ndarray, ax, xy) -> np.ndarray:
    """Colour of the PNG pixel at data point ``xy`` of ``ax``."""
    x, y = ax.transData.transform(xy)
    return png[round(png.shape[0] - y), round(x)]
