"""What a run discovered: per slot its size, majority class and purity, and which hidden classes it
found, as records and ``report.md`` (the figures of them, counts by slot and the images each
discovered slot holds, are in :mod:`pyro_sus.plots`).

Purity and majority are read on the validation split (as the honest mapping is); test sizes and
purities are shown beside them. A hidden class counts as *found* when the discovered (extra) slots
mapped to it (their validation majority) hold at least ``FOUND_RECALL`` of its validation points,
with purity at least ``FOUND_PURITY`` (the share of those slots' validation points that are of it):
a slot that holds a few of a class's points, or holds them among others, finds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io import atomic_write_json, atomic_write_text
from .metrics import majority_class

__all__ = ["FOUND_PURITY", "FOUND_RECALL", "FOUND_RULE", "PRIOR_SD_NOTE", "slot_table", "class_recall",
           "discovery_summary", "collapse_note", "report_markdown", "write_report"]

#: The discovered slots mapped to a hidden class find it when at least this share of their validation points is
#: that class ...
FOUND_PURITY = 0.5
#: ... and they hold at least this share of its validation points.
FOUND_RECALL = 0.5
FOUND_RULE = (f"a hidden class is found when the discovered slots mapped to it hold at least {FOUND_RECALL:.0%} of "
              f"its validation points with purity at least {FOUND_PURITY:.0%}")
#: What the report's sd column is.
PRIOR_SD_NOTE = ("sd of p(z|y): how widely the model's prior spreads a slot's codes in z (root mean variance over "
                 "z's dimensions); a known slot much wider than the discovered ones has taken in other classes")


def _slot_stats(slots: np.ndarray, labels: np.ndarray, n_slots: int) -> list[dict[str, Any]]:
    stats = []
    for slot in range(n_slots):
        members = labels[slots == slot]
        if len(members):
            majority, count = majority_class(members)
            stats.append({"size": int(len(members)), "majority": majority, "purity": float(count / len(members))})
        else:
            stats.append({"size": 0, "majority": None, "purity": None})
    return stats


def slot_table(val_slots: np.ndarray, val_labels: np.ndarray, test_slots: np.ndarray | None,
               test_labels: np.ndarray | None, n_known: int, n_slots: int,
               prior_sd: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """One row per slot: kind (known / discovered), validation size, majority class and purity, and
    the same on the test set (None without one); with ``prior_sd`` (the model's
    ``latent_prior_sd()``), each slot's sd of p(z | y = slot) as ``prior_z_sd``."""
    val = _slot_stats(np.asarray(val_slots), np.asarray(val_labels), n_slots)
    test = (_slot_stats(np.asarray(test_slots), np.asarray(test_labels), n_slots) if test_slots is not None
            else [None] * n_slots)
    return [{"slot": slot, "kind": "known" if slot < n_known else "discovered",
             "validation_size": val[slot]["size"], "validation_majority": val[slot]["majority"],
             "validation_purity": val[slot]["purity"],
             "test_size": None if test[slot] is None else test[slot]["size"],
             "test_majority": None if test[slot] is None else test[slot]["majority"],
             "test_purity": None if test[slot] is None else test[slot]["purity"],
             **({} if prior_sd is None else {"prior_z_sd": float(prior_sd[slot])})} for slot in range(n_slots)]


def class_recall(slots: np.ndarray, labels: np.ndarray, mapping: np.ndarray, classes: Sequence[int]
                 ) -> dict[str, float | None]:
    """Per class, the share of its points in the slots mapped to it (None for a class without points)."""
    slots, labels = np.asarray(slots), np.asarray(labels)
    recall: dict[str, float | None] = {}
    for c in classes:
        mine = labels == c
        recall[str(int(c))] = float((mapping[slots[mine]] == c).mean()) if mine.any() else None
    return recall


def discovery_summary(table: Sequence[dict[str, Any]], hidden_classes: Sequence[int], val_slots: np.ndarray,
                      val_labels: np.ndarray) -> dict[str, Any]:
    """Which hidden classes the discovered slots found (:data:`FOUND_RULE`), with each hidden class's
    validation recall and purity in the discovered slots mapped to it, and how many discovered slots
    hold any validation point."""
    val_slots, val_labels = np.asarray(val_slots), np.asarray(val_labels)
    finders: dict[int, list[int]] = {int(c): [] for c in hidden_classes}
    for row in table:
        if row["kind"] == "discovered" and row["validation_majority"] in finders:
            finders[row["validation_majority"]].append(row["slot"])
    recall, purity = {}, {}
    for c, slots in finders.items():
        held = np.isin(val_slots, slots)
        n_class = int((val_labels == c).sum())
        recall[str(c)] = float((held & (val_labels == c)).sum() / n_class) if n_class else None
        purity[str(c)] = float((val_labels[held] == c).mean()) if held.any() else None
    found = sorted(c for c in finders if recall[str(c)] is not None and purity[str(c)] is not None
                   and recall[str(c)] >= FOUND_RECALL and purity[str(c)] >= FOUND_PURITY)
    return {"hidden_classes": [int(c) for c in hidden_classes], "found": found,
            "n_found": len(found), "n_hidden": len(finders), "slots_finding": {str(c): s for c, s in finders.items()},
            "validation_recall": recall, "validation_purity": purity,
            "discovered_slots_in_use": sum(1 for r in table if r["kind"] == "discovered" and r["validation_size"]),
            "rule": FOUND_RULE}


def collapse_note(table: Sequence[dict[str, Any]]) -> str | None:
    """A sentence when the run put every validation point on a known slot although it had discovered
    slots (a collapse onto the known classes), naming how much wider the known slots' p(z|y) is when
    the table has it; else None."""
    discovered = [r for r in table if r["kind"] == "discovered"]
    if not discovered or any(r["validation_size"] for r in discovered):
        return None
    note = ("No validation point went to a discovered slot: the model put every point, hidden classes "
            "included, on a known slot (a collapse onto the known classes).")
    known = [r["prior_z_sd"] for r in table if r["kind"] == "known" and "prior_z_sd" in r]
    if known and all("prior_z_sd" in r for r in discovered):
        ratio = float(np.mean(known) / np.mean([r["prior_z_sd"] for r in discovered]))
        note += (f" The known slots' p(z|y) is {ratio:.1f} times as wide as the discovered slots' (mean sd)."
                 if ratio > 1 else "")
    return note


def report_markdown(table: Sequence[dict[str, Any]], summary: dict[str, Any], mapping: np.ndarray,
                    recall: dict[str, dict[str, float | None]] | None = None,
                    open_set: dict[str, Any] | None = None) -> str:
    """report.md's text: the found-classes line, the slot table, each class's recall, the unseen classes."""
    fmt = lambda v: "" if v is None else (f"{100 * v:.0f}%" if isinstance(v, float) else str(v))  # noqa: E731
    with_sd = all("prior_z_sd" in r for r in table)
    lines = [f"Hidden classes found: {summary['n_found']} of {summary['n_hidden']} ({summary['found']}); "
             f"discovered slots in use: {summary['discovered_slots_in_use']}. Rule: {summary['rule']}."]
    note = collapse_note(table)
    lines += [note] if note else []
    if summary.get("validation_recall"):
        lines += ["", "| hidden class | found | discovered slots mapped to it | validation recall in them "
                      "| their validation purity |", "|---|---|---|---|---|"]
        for c in summary["hidden_classes"]:
            key = str(c)
            lines.append(f"| {c} | {'yes' if c in summary['found'] else 'no'} "
                         f"| {', '.join(map(str, summary['slots_finding'][key])) or 'none'} "
                         f"| {fmt(summary['validation_recall'][key])} | {fmt(summary['validation_purity'][key])} |")
    if recall:
        parts = [part for part in ("validation", "test") if part in recall]
        classes = sorted({int(c) for part in parts for c in recall[part]})
        lines += ["", "Recall per class: the share of its points in the slots mapped to it (known slots keep their "
                      "classes; a discovered slot takes its validation majority).", "",
                  "| class | " + " | ".join(f"{part} recall" for part in parts) + " |",
                  "|---|" + "---|" * len(parts)]
        lines += [f"| {c} | " + " | ".join(fmt(recall[part].get(str(c))) for part in parts) + " |" for c in classes]
    lines += ["", "| slot | kind | mapped class | validation size | validation majority | validation purity "
                  "| test size | test majority | test purity |" + (" sd of p(z|y) |" if with_sd else ""),
              "|---|---|---|---|---|---|---|---|---|" + ("---|" if with_sd else "")]
    for row in sorted(table, key=lambda r: r["slot"]):
        mapped = int(mapping[row["slot"]])
        lines.append(f"| {row['slot']} | {row['kind']} | {mapped if mapped >= 0 else 'none'} "
                     f"| {fmt(row['validation_size'])} | {fmt(row['validation_majority'])} "
                     f"| {fmt(row['validation_purity'])} | {fmt(row['test_size'])} | {fmt(row['test_majority'])} "
                     f"| {fmt(row['test_purity'])} |" + (f" {row['prior_z_sd']:.2f} |" if with_sd else ""))
    if with_sd:
        lines += ["", f"The {PRIOR_SD_NOTE}."]
    if open_set and open_set.get("unseen_test_classes"):
        auroc = open_set.get("auroc_unseen")
        flagged = open_set.get("flagged_at_validation_5pct", {})
        lines += ["", "## Classes withheld from training", "",
                  f"Classes {open_set['unseen_test_classes']} never reached training or validation; they have no slot "
                  f"of their own, and the test scores above leave them out. How well the fit score "
                  f"({open_set.get('score')}) tells their {open_set.get('n_unseen_test_points', '')} test points apart "
                  f"from the seen classes' (AUROC): " + ("n/a" if auroc is None else f"{auroc:.3f}")
                  + (f"; at the validation split's 5% quantile {fmt(flagged.get('unseen'))} of them are flagged, and "
                     f"{fmt(flagged.get('seen'))} of the seen classes' points." if flagged else ".")]
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, table: list[dict[str, Any]], summary: dict[str, Any], mapping: np.ndarray,
                 recall: dict[str, dict[str, float | None]] | None = None,
                 open_set: dict[str, Any] | None = None) -> None:
    """``report.json`` (slots, summary, per-class recall, the withheld classes' open-set numbers) and
    ``report.md`` (the same as tables) in ``run_dir``."""
    atomic_write_json(run_dir / "report.json", {"summary": summary, "slots": table, "slot_to_class": mapping.tolist(),
                                                "class_recall": recall, "open_set": open_set})
    atomic_write_text(run_dir / "report.md", report_markdown(table, summary, mapping, recall, open_set))
