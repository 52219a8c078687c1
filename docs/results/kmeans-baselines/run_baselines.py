"""The k-means baseline (issue 41) on the split of every recorded run under docs/results.

For each ``*run.json`` recorded beside a ``*results.json``, the k-means baseline is fitted with
``pyro_sus.fit`` on the same data, split (the recorded split seed), preprocessing and seed, and
scored by the same evaluation; its honest test accuracy is written beside the run's own in
``docs/results/kmeans-baselines/<folder>.json``. A run whose data was restricted (a reproduce row's
``keep_classes``, so its content hash is not the full data set's) is listed as skipped.

    python docs/results/kmeans-baselines/run_baselines.py [--data-dir ../shared/data]
    python docs/results/kmeans-baselines/run_baselines.py --markdown   # the table of docs/RESULTS.md, from the JSON
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pyro_sus import fit
from pyro_sus.run import data_fingerprint, hardware_info
from pyro_sus.data import load_dataset
from pyro_sus.spec import RunSpec

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent


def baseline_for(record: Path, data_dir: str, cache: dict) -> dict:
    spec = RunSpec.from_json(json.loads(record.read_text()))
    results_path = record.with_name(record.name.replace("run.json", "results.json"))
    ours = json.loads(results_path.read_text()).get("test", {}).get("accuracy")
    entry = {"record": str(record.relative_to(RESULTS)), "model": spec.model, "seed": spec.train.seed,
             "epochs": spec.train.epochs, "ours": ours}
    name = spec.data.dataset
    if name not in cache:
        cache[name] = load_dataset(name, data_dir)
    data = cache[name]
    if spec.data.sha256 is not None and data_fingerprint(data) != spec.data.sha256:
        return {**entry, "skipped": "the run's data was restricted (its content hash is not the full data set's)"}
    s = spec.split
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run = fit("kmeans", data, Path(folder) / "kmeans", hidden_classes=s.hidden_classes,
                  unseen_classes=s.unseen_classes, labels_per_class=s.labels_per_class,
                  labelled_fraction=s.labelled_fraction, n_extra=s.n_extra, validation_fraction=s.validation_fraction,
                  split_seed=s.seed, std_threshold=spec.preprocess.std_threshold,
                  train_options={"seed": spec.train.seed, "device": "cpu"}, progress=False)
        results = json.loads((run.run_dir / "results.json").read_text())
    test = results.get("test", {})
    return {**entry, "kmeans": test.get("accuracy"), "kmeans_known": test.get("known_accuracy"),
            "kmeans_novel": test.get("novel_accuracy"), "kmeans_nmi": test.get("nmi"),
            "kmeans_seconds": time.perf_counter() - started}


def markdown() -> str:
    """One line per recorded folder and model: our accuracy and k-means' on the same splits (mean over seeds)."""
    lines = ["| records | row | seeds | epochs | ours | k-means, same splits | margin |", "|---|---|---|---|---|---|---|"]
    for path in sorted(HERE.glob("*.json")):
        runs = [r for r in json.loads(path.read_text())["runs"] if r.get("kmeans") is not None and r["ours"] is not None]
        # A row: the records of one setting over its seeds (file names differ only in -seedN).
        row = lambda r: re.sub(r"-?seed\d+-?run\.json$", "", Path(r["record"]).name) or r["model"]  # noqa: E731
        for label in sorted({row(r) for r in runs}):
            mine = [r for r in runs if row(r) == label]
            ours = 100 * sum(r["ours"] for r in mine) / len(mine)
            theirs = 100 * sum(r["kmeans"] for r in mine) / len(mine)
            lines.append(f"| `{path.stem}` | {label} | {', '.join(str(r['seed']) for r in mine)} | "
                         f"{', '.join(sorted({str(r['epochs']) for r in mine}))} | {ours:.1f} | {theirs:.1f} | "
                         f"{ours - theirs:+.1f} |")
        skipped = [r for r in json.loads(path.read_text())["runs"] if r.get("skipped")]
        if skipped:
            lines.append(f"| `{path.stem}` | {', '.join(sorted({r['model'] for r in skipped}))} | "
                         f"{len(skipped)} run(s) | | | not fitted: {skipped[0]['skipped']} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(RESULTS.parents[2] / "shared" / "data"))
    parser.add_argument("--markdown", action="store_true", help="print the results table from the JSON files")
    args = parser.parse_args()
    if args.markdown:
        print(markdown())
        return
    records = sorted(p for p in RESULTS.glob("*/*run.json")
                     if p.with_name(p.name.replace("run.json", "results.json")).is_file())
    by_folder: dict[str, list[dict]] = defaultdict(list)
    cache: dict = {}
    for record in records:
        entry = baseline_for(record, args.data_dir, cache)
        by_folder[record.parent.name].append(entry)
        print(json.dumps(entry), flush=True)
    for folder, entries in by_folder.items():
        (HERE / f"{folder}.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"),
                                                         "hardware": hardware_info("cpu"), "runs": entries},
                                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
