"""Regenerate the PNGs of docs/img/ with the real plotting code on simulator data:
``PYTHONPATH=src python docs/img/make_images.py`` (about a minute on one core)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

import cellweave as cw

HERE = Path(__file__).resolve().parent
DPI = 60


def save(fig, name: str) -> None:
    """Write ``fig`` as a small PNG (256 colours, each file < 150 KB)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(256).save(HERE / name, optimize=True)
    print(f"{name}: {(HERE / name).stat().st_size / 1024:.0f} KB")


def main() -> None:
    warnings.simplefilter("ignore")
    spatial, reference = cw.sim.simulate_spatial(n_spots=500, grid="hex", random_state=0)
    with TemporaryDirectory() as tmp:
        adata = cw.io.read_visium(cw.sim.write_spaceranger(spatial, Path(tmp) / "my_visium"))
    adata.obs["domain"] = spatial.obs["domain"].to_numpy()
    # 1. spots over the H&E image, scanpy's orientation and spot size
    save(cw.pl.spatial(adata, color=["domain", "gene_0000"]), "spatial_over_image.png")
    # 2. observed / imputed / truth of the default (most spatially structured) gene, one scale
    cw.tl.impute(adata, method="auto", random_state=0)
    adata.layers["observed"] = cw.pp.log_normalize(adata.X)
    adata.layers["truth"] = cw.pp.log_normalize(spatial.layers["true_expression"])
    gene = cw.pl.informative_gene(adata, layer="imputed")
    fig = cw.pl.spatial(adata, color=[gene] * 3, layer=["observed", "imputed", "truth"],
                        share_scale=True, img_key=None)  # fmt: skip
    save(fig, "impute_shared_scale.png")
    # 3. cell-type fractions of every type on one scale
    cw.tl.map_cells(reference, adata, cell_type_key="cell_type", random_state=0)
    save(cw.pl.fractions(adata), "fractions_grid.png")
    # 4. the neighbour graph with its edges
    cw.graph.spatial_neighbors(adata, max_order=2)
    save(cw.pl.spatial_graph(adata[adata.obs["array_row"] < 8].copy()), "neighbour_graph.png")
    # 5. one-vs-rest differential test of a mosaic model: volcano and dot plot
    mdata = cw.sim.simulate_mosaic(n_cells=600, random_state=0)
    model = cw.tl.integrate(mdata, batch_key="batch", label_key="cell_type", max_epochs=30,
                            return_model=True, random_state=0)  # fmt: skip
    de = model.differential("cell_type", modality="rna", n_samples=2000)
    save(cw.pl.volcano(de, groups=list(de["group1"].unique()[:4])), "volcano.png")
    save(cw.pl.de_dotplot(de), "de_dotplot.png")
    # 6. metric bars: sorted, seed error bars, ratio to the raw counts
    result = cw.impute.evaluate(
        adata, methods=["raw", "gene_mean", "rings", "nmf"], seeds=(0, 1, 2)
    )
    scores = result.per_seed.set_index("method")[["deviance"]]
    save(cw.pl.metric_bars(scores, reference="raw"), "metric_bars.png")


if __name__ == "__main__":
    main()
