"""The discovery report on hand-made predictions, and the command that writes it."""

import json

import numpy as np
import pytest

from pyro_sus.cli import main
from pyro_sus.report import FOUND_MIN_POINTS, FOUND_PURITY, discovery_summary, slot_table


def test_slot_table_and_found_classes_on_hand_made_predictions():
    """Known slots 0, 1 (classes 0, 1); discovered slots 2-4; hidden classes 5, 6, 7.
    Slot 2: 6 points, 5 of class 5 (found). Slot 3: 6 points, 3 of class 6 and 3 of class 7 (purity
    0.5: 6 found, the tie going to the smaller class). Slot 4: 2 points of class 7 (too few: 7 not found)."""
    assert FOUND_PURITY == 0.5 and FOUND_MIN_POINTS == 5
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
    summary = discovery_summary(table, hidden_classes=[5, 6, 7])
    assert summary["found"] == [5, 6] and summary["n_found"] == 2 and summary["n_hidden"] == 3
    assert summary["slots_finding"] == {"5": [2], "6": [3], "7": []}
    assert summary["discovered_slots_in_use"] == 3


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
    assert report["summary"]["hidden_classes"] == [7, 8, 9]
    assert sum(r["validation_size"] for r in report["slots"]) == json.loads((out / "results.json").read_text())[
        "validation"]["n"]
    for name in ("report.md", "slot_counts.png", "discovered.png"):
        assert (out / name).stat().st_size > 0
