"""Pyro's own SS-VAE script beside our M2 at 100 labels (issue 24): python docs/results/pyro-peer/plot.py

Per epoch, on MNIST's last 10k training images (validation) and the test set. The peer's records are
``seed*/peer.json`` (benchmarks/pyro_peer_ss_vae.py); ours are the ``pyro-ssvae-tutorial`` entry's
runs at Pyro's learning rate 4.2e-4 (``../pyro-tutorial-gap/entry-100-seed*``), which record validation
accuracy after a majority mapping of q(y|x)'s argmax (``val_cluster_accuracy``), and the benchmark
that trains our M2 with Pyro's sequence of steps (``../pyro-tutorial-gap/pyro-sequence-100-50ep.json``).
"""

import json
from pathlib import Path

from pyro_sus.plots import plot_curves

HERE = Path(__file__).parent
GAP = HERE.parent / "pyro-tutorial-gap"


def peer_row(record: dict) -> str:
    """One Markdown row: the best-validation epoch and its test accuracy, test at epochs 10 / 30 / 50."""
    epochs = record["epochs"]
    best = max(epochs, key=lambda e: e["val_accuracy"])  # the first epoch reaching the best, as Pyro's script keeps it
    test_at = {e["epoch"]: e["test_accuracy"] for e in epochs}
    at = " / ".join(f"{100 * test_at[n]:.1f}" if n in test_at else "-" for n in (10, 30, 50))
    return (f"| {record['script_args'][record['script_args'].index('--seed') + 1]} | {best['epoch']} "
            f"| {100 * best['val_accuracy']:.1f} | {100 * best['test_accuracy']:.1f} | {at} "
            f"| {record['wall_seconds']:,.0f} |")


if __name__ == "__main__":
    histories = {}
    print("| seed | best-validation epoch | its validation | its test | test at epochs 10 / 30 / 50 | wall s |")
    print("|---|---|---|---|---|---|")
    for path in sorted(HERE.glob("seed*/peer.json")):
        record = json.loads(path.read_text())
        print(peer_row(record))
        histories[f"Pyro's script, {path.parent.name}"] = [
            {"epoch": e["epoch"], "validation accuracy": e["val_accuracy"], "test accuracy": e["test_accuracy"]}
            for e in record["epochs"]]
    for metrics in sorted(GAP.glob("entry-100-seed*-metrics.jsonl")):
        seed = metrics.name.split("-")[2]
        histories[f"ours (pyro-ssvae-tutorial entry), {seed}"] = [
            {"epoch": r["epoch"], "validation accuracy": r["val_cluster_accuracy"]}
            for r in map(json.loads, metrics.read_text().splitlines())]
    sequence = json.loads((GAP / "pyro-sequence-100-50ep.json").read_text())["log"]
    histories["our M2, Pyro's step sequence (benchmark; ReLU ending q(z|x,y)), seed 0"] = [
        {"epoch": r["epoch"], "validation accuracy": r["val"], "test accuracy": r["test"]} for r in sequence]
    fig = plot_curves(histories, ["validation accuracy", "test accuracy"],
                      title="MNIST, 100 labels: Pyro's ss_vae_M2.py against our M2", columns=2)
    # Seven runs: the legend goes under the panels instead of over the first one.
    fig.axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(1.1, -0.2), ncol=2)
    fig.savefig(HERE / "peer-curves.png", dpi=100, bbox_inches="tight")
