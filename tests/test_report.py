"""The discovery report on hand-made predictions, and the command that writes it."""

import json

import numpy as np
import matplotlib.pyplot as plt
import pytest

from pyro_sus.cli import main
from pyro_sus.report import (FOUND_PURITY, FOUND_RECALL, report_markdown, class_recall, collapse_note, discovery_summary,
                             slot_table)


def test_slot_table_and_found_classes_on_hand_made_predictions():
    """Known slots 0, 1 (classes 0, 1); discovered slots 2-4; hidden classes 5, 6, 7.
    Slot 2: 6 points, 5 of class 5 (all of its 5: found). Slot 3: 6 points, 3 of class 6 and 3 of class 7
    (maps to 6, the tie going to the smaller class; all of 6's points at purity 0.5: found). Slot 4:
    2 points, both of class 7, so pure, but 2 of 7's 6 points: 7 is not found (the report once said it was)."""
    assert FOUND_PURITY == 0.5 and FOUND_RECALL == 0.5
    val_slots = np.array([0, 0, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4, 4])
    val_labels = np.array([0, 0, 1, 5, 5, 5, 5, 5, 7, 6, 6, 6, 7, 7, 7, 7, 7])
    test_slots, test_labels = np.array([2, 2, 4]), np.array([5, 6, 7])
    table = slot_table(val_slots, val_labels, test_slots, test_labels, n_known=2, n_slots=5)
    assert [r["kind"] for r in table] == ["known", "known", "discovered", "discovered", "discovered"]
    assert (table[2]["validation_size"], table[2]["validation_majority"]) == (6, 5)
    assert table[2]["validation_purity"] == pytest.approx(5 / 6)
    assert (table[2]["test_size"], table[2]["test_purity"]) == (2, 0.5)
    assert table[3]["validation_majority"] == 6 and table[3]["validation_purity"] == 0.5
    assert table[0]["test_size"] == 0 and table[0]["test_majority"] is None
    summary = discovery_summary(table, [5, 6, 7], val_slots, val_labels)
    assert summary["found"] == [5, 6] and summary["n_found"] == 2 and summary["n_hidden"] == 3
    assert summary["slots_finding"] == {"5": [2], "6": [3], "7": [4]}
    assert summary["validation_recall"] == {"5": 1.0, "6": 1.0, "7": pytest.approx(2 / 6)}
    assert summary["validation_purity"] == {"5": pytest.approx(5 / 6), "6": 0.5, "7": 1.0}
    assert summary["discovered_slots_in_use"] == 3
    mapping = np.array([0, 1, 5, 6, 7])
    recall = {"validation": class_recall(val_slots, val_labels, mapping, [0, 1, 5, 6, 7]),
              "test": class_recall(test_slots, test_labels, mapping, [0, 1, 5, 6, 7])}
    assert recall["test"] == {"0": None, "1": None, "5": 1.0, "6": 0.0, "7": 1.0}
    text = report_markdown(table, summary, mapping, recall, {"unseen_test_classes": [9], "auroc_unseen": 0.8123,
                                                       "score": "bound", "n_unseen_test_points": 36})
    assert "| 7 | no | 4 | 33% | 100% |" in text  # pure but a third of the class: not found, and the row says why
    assert "| 5 | 100% | 100% |" in text and "| 6 | 100% | 0% |" in text
    assert "## Classes withheld from training" in text and "AUROC): 0.812" in text
    slot_rows = [line for line in text.splitlines() if line.split("|")[2:3] in ([" known "], [" discovered "])]
    assert [int(line.split("|")[1]) for line in slot_rows] == [0, 1, 2, 3, 4]  # in slot order


def test_a_run_with_every_point_on_a_known_slot_is_reported_as_collapsed_with_its_prior_spread():
    """Known slots 0, 1 hold every validation point; discovered slots 2-3 none. With the p(z|y) sds
    (known 30 and 50, discovered 4 and 6) the note says the known slots are 8.0 times as wide."""
    val_slots, val_labels = np.array([0, 0, 1, 1, 1]), np.array([0, 5, 1, 6, 6])
    table = slot_table(val_slots, val_labels, None, None, n_known=2, n_slots=4, prior_sd=[30.0, 50.0, 4.0, 6.0])
    assert [r["prior_z_sd"] for r in table] == [30.0, 50.0, 4.0, 6.0]
    note = collapse_note(table)
    assert note.startswith("No validation point went to a discovered slot") and "8.0 times as wide" in note
    text = report_markdown(table, discovery_summary(table, [5, 6], val_slots, val_labels), np.array([0, 1, -1, -1]))
    assert note in text and "| sd of p(z|y) |" in text and "| 50.00 |" in text
    assert "The sd of p(z|y): how widely the model's prior spreads a slot's codes" in text
    # Without the spread the note is there, without the comparison; a used discovered slot: no note.
    bare = slot_table(val_slots, val_labels, None, None, n_known=2, n_slots=4)
    assert "prior_z_sd" not in bare[0] and "times as wide" not in collapse_note(bare)
    assert "sd of p(z|y)" not in report_markdown(bare, discovery_summary(bare, [5, 6], val_slots, val_labels),
                                           np.array([0, 1, -1, -1]))
    used = slot_table(np.array([0, 0, 1, 1, 2]), val_labels, None, None, n_known=2, n_slots=4)
    assert collapse_note(used) is None


def test_report_command_writes_the_report_of_a_trained_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "gmdgm", "--out", str(out), "--hidden-classes", "7", "8", "9",
                 "--labelled-fraction", "0.2", "--extra-slots", "4", "--epochs", "2", "--hidden-dims", "16",
                 "--z-dim", "2", "--batch-size", "64", "--device", "cpu", "--no-progress"]) == 0
    assert "discovery:" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Hidden classes found:") and "| slot | kind |" in printed
    report = json.loads((out / "report.json").read_text())
    assert [r["slot"] for r in report["slots"]] == list(range(11))
    # GM-DGM learns p(z|y): each slot's sd is in the report, as the model gives it.
    import pyro_sus
    expected = pyro_sus.load(out).model.latent_prior_sd().tolist()
    assert [r["prior_z_sd"] for r in report["slots"]] == pytest.approx(expected)
    assert report["summary"]["hidden_classes"] == [7, 8, 9]
    assert sum(r["validation_size"] for r in report["slots"]) == json.loads((out / "results.json").read_text())[
        "validation"]["n"]
    markdown = (out / "report.md").read_text()
    assert all(f"| {slot} |" in markdown for slot in range(11))  # a row per slot
    for name in ("slot_counts.png", "discovered.png"):
        image = plt.imread(out / name)
        assert image.shape[0] > 50 and image.shape[1] > 200 and image[..., :3].std() > 0.05, name  # drawn


def test_flag_unknown_marks_points_below_the_validation_quantile_and_unseen_classes_get_an_auroc(tmp_path, capsys):
    """Training without digit 9 at all (test set keeps it): evaluate measures how well the fit score
    separates 9 (AUROC, as recomputed here); predicting the validation points themselves with
    --flag-unknown 0.2 flags a fifth of them (the threshold is their own 0.2-quantile)."""
    import dataclasses

    from sklearn.metrics import roc_auc_score

    import pyro_sus
    from pyro_sus.data import load_dataset

    digits = load_dataset("digits")
    train = digits.y_train != 9
    data = dataclasses.replace(digits, x_train=digits.x_train[train], y_train=digits.y_train[train])
    run_dir = tmp_path / "without9"
    run = pyro_sus.fit("gmdgm", data, run_dir, hidden_classes=[7, 8], labelled_fraction=0.2, extra_slots=4,
                       model_options={"hidden_dims": [16], "z_dim": 2},
                       train_options={"epochs": 2, "batch_size": 64, "device": "cpu"}, progress=False)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["open_set"]["unseen_test_classes"] == [9]
    keep = data.y_test >= 0
    expected = roc_auc_score(data.y_test[keep] == 9, -run.fit_scores(data.x_test[keep]))
    assert results["open_set"]["auroc_unseen"] == pytest.approx(expected)
    # 9 has no slot to land in: the test scores cover the classes training saw.
    assert results["test"]["n"] == int((keep & (data.y_test != 9)).sum())
    assert results["open_set"]["n_unseen_test_points"] == int((data.y_test == 9).sum())
    # Where the 9s went: per predicted (mapped) class, counts that add up to every test 9.
    landed = results["open_set"]["predicted_as"]["9"]
    mapped = run.mapping[run.predict_proba(data.x_test[data.y_test == 9]).argmax(-1)]
    assert landed == {("unmapped" if c < 0 else str(c)): int((mapped == c).sum()) for c in np.unique(mapped)}

    val_x = data.x_train[run.split.validation_idx]
    np.save(tmp_path / "val.npy", val_x)
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(tmp_path / "val.npy"), "--output", str(tmp_path / "p.npz"),
                 "--flag-unknown", "0.2"]) == 0
    flagged = np.load(tmp_path / "p.npz")["fits_no_slot"]
    assert abs(flagged.mean() - 0.2) <= 2 / len(flagged)
    assert f"{int(flagged.sum())} fit no slot" in capsys.readouterr().out
    assert main(["predict", str(run_dir), str(tmp_path / "val.npy"), "--output", str(tmp_path / "q.csv"),
                 "--flag-unknown", "1.5"]) == 2
    assert "must lie in (0, 1)" in capsys.readouterr().err
    (run_dir / "open_set.json").unlink()
    assert main(["predict", str(run_dir), str(tmp_path / "val.npy"), "--output", str(tmp_path / "q.csv"),
                 "--flag-unknown", "0.1"]) == 2
    assert "open_set.json does not exist" in capsys.readouterr().err


def test_unseen_classes_option_withholds_a_class_and_the_summary_line_gives_its_auroc(tmp_path, capsys):
    """`train --unseen-classes 9` on the full digits data: 9 never reaches training or validation,
    the test scores leave it out, and the summary line and results.json carry the open-set AUROC."""
    from pyro_sus.data import load_dataset

    out = tmp_path / "run"
    assert main(["train", "--model", "m2", "--hidden-classes", "7", "8", "--unseen-classes", "9",
                 "--labelled-fraction", "0.2", "--epochs", "2", "--batch-size", "64", "--hidden-dims", "16",
                 "--z-dim", "2", "--no-progress", "--out", str(out)]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if "open set" in ln]
    results = json.loads((out / "results.json").read_text())
    assert len(line) == 1 and f"AUROC {results['open_set']['auroc_unseen']:.3f}" in line[0]
    assert results["unseen_classes"] == [9] and results["open_set"]["unseen_test_classes"] == [9]
    digits = load_dataset("digits")
    split = np.load(out / "split.npz")
    used = np.concatenate([split["labelled_idx"], split["unlabelled_idx"], split["validation_idx"]])
    assert not (digits.y_train[used] == 9).any()
    assert results["test"]["n"] == int(((digits.y_test >= 0) & (digits.y_test != 9)).sum())


def test_the_report_commands_help_states_the_rule_the_report_applies(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (f"at least {FOUND_RECALL:.0%} of its validation points at purity at least {FOUND_PURITY:.0%}"
            in text)
