"""benchmarks/_carry.py: peer rows read back from an earlier mapping report."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _carry import SOURCE_PREFIX, read_peers, with_peers

REPORT = """# Mapping benchmark

{source}
## merfish, normalized scheme

| method | kind | pcc | ssim | rmse | js | AS | rank | seconds | cpu_seconds |
|---|---|---|---|---|---|---|---|---|---|
| ot | cellweave | 0.246 | 0.172 | 1.221 | 0.286 | 0.818 | 1 | 0.167 | 0.166 |
| tangram | peer | 0.179 | 0.137 | 1.271 | 0.317 | 0.409 | 2 | 485.423 | 83.571 |

## merfish, raw scheme

| method | kind | pcc | ssim | rmse | js | AS | rank | seconds | cpu_seconds |
|---|---|---|---|---|---|---|---|---|---|
| gimvi | peer | 0.265 | 0.179 | 1.213 | 0.275 | - | carried | 1065.486 | 187.680 |
| ot | cellweave | 0.358 | 0.276 | 1.124 | 0.270 | 0.818 | 1 | 0.167 | 0.166 |

## Deconvolution

| method | rmse |
|---|---|
| tangram | 0.124 |
"""


def test_read_peers_keeps_only_peer_rows_per_data_set_and_scheme(tmp_path):
    path = tmp_path / "mapping.md"
    path.write_text(REPORT.format(source=f"{SOURCE_PREFIX}commit abc1234 (2026-11-21)"))
    peers, source = read_peers(path)
    assert source == "commit abc1234 (2026-11-21)"
    assert list(peers) == ["merfish"]
    assert list(peers["merfish"]["normalized"].index) == ["tangram"]
    assert list(peers["merfish"]["raw"].index) == ["gimvi"]  # a carried row carries again
    row = peers["merfish"]["normalized"].loc["tangram"]
    assert row["pcc"] == pytest.approx(0.179) and row["cpu_seconds"] == pytest.approx(83.571)


def test_read_peers_without_peers_fails(tmp_path):
    path = tmp_path / "mapping.md"
    path.write_text("# nothing\n\n## merfish, raw scheme\n\n| method | kind |\n|---|---|\n")
    with pytest.raises(SystemExit, match="no peer rows"):
        read_peers(path)


def test_with_peers_appends_unranked_rows_and_prefers_rows_run_now(tmp_path):
    path = tmp_path / "mapping.md"
    path.write_text(REPORT.format(source=""))
    carried, source = read_peers(path)
    assert source == str(path)  # no source line and not in git: the file's path
    carried = carried["merfish"]["normalized"]
    table = pd.DataFrame(
        {
            "kind": ["cellweave"],
            "pcc": [0.3],
            "ssim": [0.2],
            "rmse": [1.0],
            "js": [0.2],
            "AS": [1.0],
            "rank": [1],
            "seconds": [1.0],
            "cpu_seconds": [1.0],
        },
        index=pd.Index(["attention"], name="method"),
    )
    out = with_peers(table, carried)
    assert list(out.index) == ["attention", "tangram"]
    assert out.loc["tangram", "rank"] == "carried" and out.loc["tangram", "AS"] == "-"
    assert list(out.columns) == list(table.columns)
    now = pd.concat([table, table.rename(index={"attention": "tangram"})])
    assert list(with_peers(now, carried).index) == ["attention", "tangram"]  # not duplicated
    assert with_peers(table, None) is table


def test_keep_sections_keeps_notes_deconvolution_and_what_was_not_rerun(tmp_path):
    from bench_mapping import keep_sections

    out = tmp_path / "mapping.md"
    out.write_text(
        "# old\n\n## merfish, raw scheme\n\nold table\n\n## Ablations of x\n\nold ablations\n\n"
        "## Deconvolution: y\n\ndeconv\n\n## Scale: z\n\nold scale\n\n## Notes\n\n- by hand\n"
    )
    new = "# new\n\n## merfish, raw scheme\n\nnew table\n\n## Scale: z\n\nnew scale\n"
    text = keep_sections(new, out, {"## Scale": True, "## Ablations": False})
    heads = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert heads == [
        "## merfish, raw scheme",
        "## Scale: z",
        "## Deconvolution: y",
        "## Ablations of x",
        "## Notes",
    ]
    assert "new table" in text and "old table" not in text
    assert "new scale" in text and "old scale" not in text
    assert "old ablations" in text and "- by hand" in text
