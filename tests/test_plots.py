"""Figures drawn from run records."""

import pytest

from pyro_sus.plots import plot_curves


def test_curves_draw_one_line_per_run_and_key_and_skip_missing_values(tmp_path):
    histories = {
        "enumerate": [{"epoch": 1, "val_novel_accuracy": 0.2, "val_extra_slots_used": 30},
                      {"epoch": 2, "val_novel_accuracy": 0.5, "val_extra_slots_used": 40}],
        "gumbel": [{"epoch": 1, "val_novel_accuracy": 0.1},  # an older record without the slot count
                   {"epoch": 2, "val_novel_accuracy": 0.3, "val_extra_slots_used": 12}],
    }
    path = tmp_path / "curves.png"
    fig = plot_curves(histories, ["val_novel_accuracy", "val_extra_slots_used"], path)
    assert path.stat().st_size > 0
    novel, slots = fig.axes[:2]
    assert [line.get_label() for line in novel.lines] == ["enumerate", "gumbel"]
    assert list(novel.lines[1].get_ydata()) == [0.1, 0.3]
    assert [list(line.get_xdata()) for line in slots.lines] == [[1, 2], [2]]
    with pytest.raises(ValueError, match="at least one"):
        plot_curves(histories, [])
