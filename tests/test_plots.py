"""Figures drawn from run records."""

import matplotlib.pyplot as plt
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
    # A run keeps its colour in a panel where a run before it has no values.
    only_second = plot_curves(histories | {"enumerate": [{"epoch": 1, "val_novel_accuracy": 0.2}]},
                              ["val_novel_accuracy", "val_extra_slots_used"])
    novel, slots = only_second.axes[:2]
    assert [line.get_label() for line in slots.lines] == ["gumbel"]
    assert slots.lines[0].get_color() == novel.lines[1].get_color() != novel.lines[0].get_color()
    with pytest.raises(ValueError, match="at least one"):
        plot_curves(histories, [])


def test_learning_curves_show_the_loss_its_terms_and_the_validation_records(tmp_path):
    from pyro_sus.plots import plot_learning_curves

    history = [{"epoch": e, "loss": 10.0 - e, "loss_reconstruction": 8.0 - e, "loss_kl_z": 2.0, "lr": 1e-3,
                "seconds": 1.0, "val_accuracy": 0.5 + e / 10, "val_extra_slots_used": 3 + e} for e in (1, 2, 3)]
    fig = plot_learning_curves(history, tmp_path / "curves.png")
    titles = [ax.get_title() for ax in fig.axes if ax.lines]
    assert titles == ["loss", "loss_kl_z", "loss_reconstruction", "lr", "val_accuracy", "val_extra_slots_used"]
    image = plt.imread(tmp_path / "curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.05  # drawn, not blank
