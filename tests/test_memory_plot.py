"""The arena picture: one rectangle per buffer, saved without a display."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tinyml_lab import zoo
from tinyml_lab.memory import deployed_graph, plan
from tinyml_lab.memory.plot import plot_plan


def test_plot_draws_every_buffer(tmp_path):
    q = deployed_graph(zoo.get("kws-dscnn"))
    p = plan(q, "greedy-size", inplace=True)
    fig = plot_plan(p)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    rects = [a for a in ax.patches if isinstance(a, Rectangle)]
    assert len(rects) == len(p.lifetimes)
    assert ax.get_xlabel() == "step (node)" and "KB" in ax.get_ylabel()
    assert any(t.get_text() == "relu_conv1" for t in ax.texts)  # fused conv1 + ReLU
    out = tmp_path / "arena.png"
    fig.savefig(out)
    assert out.stat().st_size > 1000
    fig2 = plot_plan(p, ax=fig.axes[0], labels=False, unit="B", title="again")
    assert fig2 is fig
