"""Plots are written atomically: a complete PNG or the previous file, never a truncated one, and no figure left
open."""

import matplotlib.pyplot as plt
import pytest

from surf.reporting.figure_file import save_figure


def _figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    return fig


def test_a_figure_becomes_a_png_and_is_closed(tmp_path):
    fig = _figure()
    path = save_figure(fig, tmp_path / "plots" / "curve.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 1000
    assert fig.number not in plt.get_fignums()
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]  # no temporary file left


def test_a_failed_render_keeps_the_previous_plot(tmp_path, monkeypatch):
    path = save_figure(_figure(), tmp_path / "curve.png")
    before = path.read_bytes()
    fig = _figure()

    def dies_half_way(target, **kwargs):
        target.write(b"\x89PNG half")  # a render killed part-way
        raise KeyboardInterrupt

    monkeypatch.setattr(fig, "savefig", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["curve.png"]
    plt.close(fig)
