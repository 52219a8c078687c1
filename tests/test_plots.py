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
    # Human titles; loss_kl_z and lr never change, so they get no panel and the title names their values.
    assert titles == ["loss (per point, training batches)", "reconstruction: -log p(x | ...)",
                      "validation accuracy (honest)", "extra slots holding validation points"]
    assert "not drawn: KL(q(z | ...) || p(z | ...)) = 2; learning rate = 0.001" in fig.texts[0].get_text()
    image = plt.imread(tmp_path / "curves.png")
    assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 0.05  # drawn, not blank


def test_the_confusion_matrix_writes_its_counts_and_a_row_per_unseen_class():
    from pyro_sus.plots import plot_confusion

    scored = {"confusion_matrix": [[5, 1], [0, 4]], "confusion_classes": [0, 1], "accuracy": 0.9}
    fig = plot_confusion(scored, unseen={"2": {"0": 3, "unmapped": 1}})
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "3", "4", "5"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2 (unseen)"]
    # Colour is the share of the row: the unseen row's 3 of 4 points (one in an unmapped slot).
    assert ax.images[0].get_array()[2, 0] == pytest.approx(0.75)
    plt.close(fig)


def test_class_samples_draw_the_decoder_mean_of_every_slot_from_a_trained_run(trained_run, tmp_path):
    """One column per slot, n_samples rows of images in the data's shape, drawn without gradients."""
    from pyro_sus.plots import plot_class_samples
    from pyro_sus.run import load

    run = load(trained_run)
    fig = plot_class_samples(run, n_samples=3, path=tmp_path / "samples.png")
    images = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(images) == 3 * run.split.n_slots
    assert all(image.shape == tuple(run.spec.data.image_shape) for image in images)
    assert (tmp_path / "samples.png").stat().st_size > 0
    plt.close(fig)
