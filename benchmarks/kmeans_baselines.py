"""The k-means baseline (issue 41) beside runs that are kept only as records under docs/results.

Two modes, each fitting the baseline with the package's own ``fit`` on exactly the run's data, split,
preprocessing and seed, and scoring it by the same evaluation:

- every ``*run.json`` recorded beside a ``*results.json``: the baseline's honest test accuracy beside the
  run's own, in ``docs/results/kmeans-baselines/<folder>.json`` (``--markdown`` prints their table). A
  run whose data was restricted (a reproduce row's ``keep_classes``) is listed as skipped: its record
  does not say how.
- ``--summary docs/results/FOLDER/summary.json``: the runs of a ``pyro-sus reproduce`` summary whose run
  folders are gone. Each (row, seed) is planned again as ``reproduce`` planned it (so the split of a row
  with restricted data is made again too, and checked against the recorded ``run.json`` where there is
  one); the baseline is written beside the records as ``ROW-seedS-kmeans-results.json`` (as newer
  records have it) and each row's margin over it goes into the summary, which is written back and
  printed as its section (``--write-results``: replaced in docs/RESULTS.md).

    python benchmarks/kmeans_baselines.py [--data-dir ../shared/data]
    python benchmarks/kmeans_baselines.py --markdown
    python benchmarks/kmeans_baselines.py --summary docs/results/table1-mnist-20ep/summary.json --write-results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyro_sus import fit
from pyro_sus.api import baseline_spec
from pyro_sus.data import load_dataset
from pyro_sus.fidelity import deviations
from pyro_sus.io import atomic_write_json
from pyro_sus.reproduce import baseline_margin, render_markdown, write_results_section
from pyro_sus.run import data_fingerprint, hardware_info, run_spec
from pyro_sus.spec import RunSpec
from pyro_sus.sweep import job_data, job_fit_options, plan_jobs
from pyro_sus.tables import get_experiment

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
HERE = RESULTS / "kmeans-baselines"


def baseline_for(record: Path, data_dir: str, cache: dict) -> dict:
    results_path = record.with_name(record.name.replace("run.json", "results.json"))
    ours = json.loads(results_path.read_text()).get("test", {}).get("accuracy")
    try:
        spec = RunSpec.from_json(json.loads(record.read_text()))
    except ValueError as err:  # a record older than a field run.json now requires (--summary reads it)
        return {"record": str(record.relative_to(RESULTS)), "ours": ours,
                "model": json.loads(record.read_text())["model"],
                "skipped": f"its run.json is not a run specification now ({err})"}
    entry = {"record": str(record.relative_to(RESULTS)), "model": spec.model, "seed": spec.train.seed,
             "epochs": spec.train.epochs, "ours": ours}
    name = spec.data.dataset
    if name not in cache:
        cache[name] = load_dataset(name, data_dir)
    data = cache[name]
    if spec.data.sha256 is not None and data_fingerprint(data) != spec.data.sha256:
        return {**entry, "skipped": "the run's data was restricted (its content hash is not the full data set's)"}
    started = time.perf_counter()
    results = _fit_kmeans(spec, data)
    test = results.get("test", {})
    return {**entry, "kmeans": test.get("accuracy"), "kmeans_known": test.get("known_accuracy"),
            "kmeans_novel": test.get("novel_accuracy"), "kmeans_nmi": test.get("nmi"),
            "kmeans_seconds": time.perf_counter() - started}


def _fit_kmeans(spec: RunSpec, data) -> dict[str, Any]:
    """k-means on ``spec``'s split, preprocessing and seed (as ``pyro_sus.fit_baseline`` fits it for a run
    folder): its results.json."""
    spec = baseline_spec(spec, "kmeans")
    with tempfile.TemporaryDirectory() as folder:
        run = fit("kmeans", data, Path(folder) / "kmeans", spec=spec, device="cpu", progress=False)
        return json.loads((run.run_dir / "results.json").read_text())


def _check_same_split(record: dict[str, Any], spec: RunSpec, data, path: Path) -> None:
    """The run recorded in ``record`` (its run.json) was made on the split, preprocessing, seed and data
    ``spec`` makes now; ValueError otherwise. Compared field by field on what the record holds: older
    records lack the fields added since, whose defaults keep what those runs did."""
    now = json.loads(json.dumps({"split": dataclasses.asdict(spec.split),
                                 "preprocess": dataclasses.asdict(spec.preprocess)}))
    differ = [f"{part}.{key}" for part in now for key, value in record[part].items() if now[part].get(key) != value]
    if record["train"]["seed"] != spec.train.seed:
        differ.append("train.seed")
    if record.get("data_sha256") is not None and record["data_sha256"] != data_fingerprint(data):
        differ.append("data")
    if differ:
        raise ValueError(f"{path}: the run's split, preprocessing or seed differ from the row's now ({differ}); "
                         f"the baseline would not see the run's points")


def baselines_beside_summary(summary_path: Path, data_dir: str, elsewhere: Sequence[Path] = ()) -> dict[str, Any]:
    """Fit the k-means baseline for every (row, seed) of a recorded reproduce summary, write each beside
    its run's record (kept if written before) and each row's margin into the summary; returns the
    summary. A run's record is looked for beside the summary, then in the ``elsewhere`` folders."""
    summary = json.loads(summary_path.read_text())
    name = summary["experiment"]
    experiment = get_experiment(name)
    for row in summary["rows"]:
        if not row["seeds"]:
            continue
        chosen = {s["seed"]: s["chosen"] for s in row.get("chosen_on_validation", [])}
        with tempfile.TemporaryDirectory() as plan:
            paths = plan_jobs(name, plan, seeds=max(row["seeds"]) + 1, rows=[row["row"]], data_dir=data_dir,
                              epochs=max(row.get("schedule_epochs", row["epochs"])), smoke=row["smoke"])
            jobs = [json.loads(p.read_text()) for p in paths]
        pairs = []
        for seed in row["seeds"]:
            job = next(j for j in jobs if j["seed"] == seed and j["candidate"] == chosen.get(seed, j["candidate"]))
            base = Path(job["run_dir"]).name
            folder = next((f for f in (summary_path.parent, *elsewhere) if (f / f"{base}-results.json").is_file()),
                          None)
            if folder is None:
                raise FileNotFoundError(f"{base}-results.json, the record of {row['row']!r} seed {seed} (named as "
                                        f"reproduce names its run), is in none of {[summary_path.parent, *elsewhere]}")
            ours = folder / f"{base}-results.json"
            path = folder / f"{base}-kmeans-results.json"
            if not path.is_file():
                data = job_data(job)
                model, options = job_fit_options(job)
                spec = run_spec(model, **options)
                recorded = folder / f"{base}-run.json"
                if recorded.is_file():
                    _check_same_split(json.loads(recorded.read_text()), spec, data, recorded)
                started = time.perf_counter()
                atomic_write_json(path, _fit_kmeans(spec, data))
                print(f"{path.name}: {time.perf_counter() - started:.0f} s", flush=True)
            pairs.append((json.loads(ours.read_text()), json.loads(path.read_text())))
        row["kmeans"] = baseline_margin(pairs)
    # The deviation list as the experiment states it now (it is computed from its settings).
    summary["deviations"] = deviations(experiment)
    atomic_write_json(summary_path, summary)
    return summary


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
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--markdown", action="store_true", help="print the results table from the JSON files")
    parser.add_argument("--summary", type=Path, help="a recorded reproduce summary.json: baselines beside its runs")
    parser.add_argument("--records", type=Path, nargs="+", default=(), metavar="DIR",
                        help="with --summary: other folders holding some of its runs' records")
    parser.add_argument("--write-results", nargs="?", const=ROOT / "docs" / "RESULTS.md", type=Path, metavar="PATH",
                        help="with --summary: replace its section of docs/RESULTS.md (or PATH)")
    args = parser.parse_args()
    if args.summary:
        summary = baselines_beside_summary(args.summary, args.data_dir, args.records)
        print(render_markdown(summary))
        if args.write_results:
            write_results_section(summary, args.write_results)
        return
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
