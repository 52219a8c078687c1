"""The active-labelling loop of Vengalil & Sinha (seed 003), from zero labels.

Round 0 trains the model without labels (``warmup_epochs``). Each later round:

1. encodes the training set (posterior means) and clusters the latents into ``n_clusters``;
2. decodes every centre and asks the oracle for a label and a confidence p_c;
3. sub-clusters each cluster whose centre is "not a valid class" and asks about the sub-centres,
   level after level (``max_depth``), largest invalid cluster first, within ``budget_per_round``
   (with ``refine="spread"``, budget left then sub-clusters the widest valid clusters: our extension);
4. gives every training point the label of its deepest answered centre, with weight
   w_n = p_c f(d_n) (k-means) or p_c times its posterior probability (mixture);
5. trains ``epochs_per_round`` more epochs on Eq. 4: the VAE loss on every point plus
   gamma w_n CE(y_n, head(z_n)), then scores the head on the test set.

Labels are re-derived from scratch every round from the current latent space (the paper labels
"all training samples" each iteration); the answers of earlier rounds stay in their folders.

The run folder holds ``active.json`` (options), ``preprocess.npz``, ``rounds.json`` (one record per
finished round), ``accuracy.png``, and per round ``round_RR/``: ``answers.json`` (written after every
answer, so a stopped session resumes without asking again), ``labels.npz``, ``centres.png``,
``last.pt`` and ``metrics.jsonl`` (training state, resumable), ``model.json`` + ``model.pt``, ``round.json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..run import hardware_info
from ..data import Dataset, Preprocessor, load_dataset
from ..io import RunFileError, atomic_savez, atomic_write_json, load_checkpoint, read_json
from ..metrics import score
from ..models import build_model, get_model_class
from ..spec import PreprocessSpec, TrainConfig
from ..train import TrainingData, resolve_device, seed_everything, train
from .clustering import CLUSTER_METHODS, CONFIDENCE_FUNCTIONS, METRICS, NO_LABEL, cluster_latents, propagate_labels
from .oracles import InteractiveOracle, Oracle, SimulatedOracle

__all__ = ["ActiveConfig", "ActiveRun", "AnswerBook", "RoundLabels", "label_round", "run_active", "read_round_labels",
           "ORACLES", "REFINE"]

ORACLES = ("simulated", "interactive")
# What budget left after the invalid centres buys: nothing (the paper), or sub-clusters of the widest
# valid clusters ("spread"; our extension: merged classes hide in wide clusters).
REFINE = ("none", "spread")


@dataclass
class ActiveConfig:
    """Options of an active-labelling run (saved as ``active.json``).

    Defaults follow the paper: k = 10 clusters (and sub-clusters), 10 unsupervised epochs before the
    first labels, 5 rounds, 10-30 answers per round, Gaussian confidence with the authors' rate 1/3.
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    model: str = "betavae"
    model_options: dict[str, Any] = field(default_factory=dict)
    rounds: int = 5
    warmup_epochs: int = 10
    epochs_per_round: int = 10
    n_clusters: int = 10
    sub_clusters: int = 10
    max_depth: int = 2
    budget_per_round: int = 30
    method: str = "kmeans"
    metric: str = "euclidean"
    refine: str = "none"
    confidence: str = "gaussian"
    rate: float = 1 / 3
    oracle: str = "simulated"
    oracle_confidence: float = 1.0
    oracle_neighbours: int = 10
    oracle_purity: float = 0.6
    max_train: int | None = None
    std_threshold: float | None = PreprocessSpec.std_threshold
    batch_size: int = TrainConfig.batch_size
    learning_rate: float = 1e-3  # the loop's own (constant Adam), not TrainConfig's cosine-decayed 3e-4
    seed: int = TrainConfig.seed
    device: str = TrainConfig.device

    def __post_init__(self) -> None:
        if self.method not in CLUSTER_METHODS or self.metric not in METRICS:
            raise ValueError(f"method must be one of {CLUSTER_METHODS} and metric one of {METRICS}")
        if self.confidence not in CONFIDENCE_FUNCTIONS or not self.rate > 0:
            raise ValueError(f"confidence must be one of {CONFIDENCE_FUNCTIONS} with a rate > 0")
        if self.refine not in REFINE:
            raise ValueError(f"refine must be one of {REFINE}, got {self.refine!r}")
        if self.oracle not in ORACLES:
            raise ValueError(f"oracle must be one of {ORACLES}, got {self.oracle!r}")
        if self.rounds < 1 or self.warmup_epochs < 1 or self.epochs_per_round < 1 or self.max_depth < 1:
            raise ValueError("rounds, warmup_epochs, epochs_per_round and max_depth must be >= 1")
        if self.n_clusters < 1 or self.sub_clusters < 2:
            raise ValueError("need n_clusters >= 1 and sub_clusters >= 2")
        if self.budget_per_round < self.n_clusters:
            raise ValueError(f"budget_per_round ({self.budget_per_round}) must cover the {self.n_clusters} "
                             f"top-level centres")
        if self.max_train is not None and self.max_train < self.n_clusters:
            raise ValueError(f"max_train must be at least n_clusters ({self.n_clusters})")
        if not 0 <= self.oracle_confidence <= 1 or not 0 <= self.oracle_purity <= 1:
            raise ValueError("oracle_confidence and oracle_purity must lie in [0, 1]")

    def train_config(self, epochs: int, round_index: int) -> TrainConfig:
        """Adam with a constant rate for each phase; a fresh seed per round."""
        return TrainConfig(epochs=epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           lr_schedule="constant", seed=self.seed + round_index, device=self.device)


class AnswerBook:
    """The answers of one round, keyed by centre (``"3"``, sub-centre ``"3.7"``), saved after each one."""

    def __init__(self, path: str | Path, n_classes: int) -> None:
        self.path, self.n_classes = Path(path), n_classes
        self.answers: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            saved = read_json(self.path, "answers given so far in this round")
            try:
                self.answers = {a["node"]: a for a in saved["answers"]}
                for a in self.answers.values():
                    int(a["label"]), float(a["confidence"]), np.asarray(a["centre"], dtype=float)
            except (KeyError, TypeError, ValueError) as err:
                raise RunFileError(f"{self.path} is not a list of answers ('answers': [{{node, label, confidence, "
                                   f"centre}}, ...]; {type(err).__name__}: {err}); restore it, or delete it to be "
                                   f"asked this round's questions again") from None
        self.asked_now = 0  # answers the oracle gave in this session (not re-used ones)

    def ask(self, node: str, centre: np.ndarray, image: np.ndarray, size: int, oracle: Oracle) -> tuple[int, float]:
        """The saved answer for ``node``, else the oracle's (saved at once)."""
        if node in self.answers:
            saved = self.answers[node]
            if not np.allclose(saved["centre"], centre, rtol=1e-3, atol=1e-3):
                raise RuntimeError(f"{self.path}: the saved answer for centre {node} was given for a different "
                                   f"centre; the model or data changed since. Start a new run folder.")
            return saved["label"], saved["confidence"]
        label, confidence = oracle.answer(image)
        label, confidence = int(label), float(confidence)
        if not (label == NO_LABEL or 0 <= label < self.n_classes) or not 0 <= confidence <= 1:
            raise ValueError(f"the oracle answered ({label}, {confidence}); need a class in "
                             f"0..{self.n_classes - 1} or {NO_LABEL}, and a confidence in [0, 1]")
        if label == NO_LABEL:
            confidence = 0.0
        self.answers[node] = {"node": node, "label": label, "confidence": confidence, "size": int(size),
                              "centre": [float(v) for v in centre]}
        self.asked_now += 1
        atomic_write_json(self.path, {"answers": list(self.answers.values())})
        return label, confidence


@dataclass
class RoundLabels:
    """Every training point's propagated label (``NO_LABEL`` if none) and weight, and what was asked."""

    labels: np.ndarray
    weights: np.ndarray
    queries: list[dict[str, Any]]
    images: np.ndarray


def label_round(z: np.ndarray, decode: Callable[[np.ndarray], np.ndarray], oracle: Oracle, book: AnswerBook,
                config: ActiveConfig, seed: int = 0) -> RoundLabels:
    """Cluster ``z``, ask about centres (and sub-centres of invalid ones, within the budget), propagate.

    With ``config.refine == "spread"``, budget left after that sub-clusters the valid top-level
    clusters too, the widest first (largest sum of squared distances to the centre: where two classes
    share a cluster), and their members take the sub-centres' answers.
    ``decode`` maps latent centres (k, D) to images in the data's raw layout (k, ...)."""
    n_points = len(z)
    labels = np.full(n_points, NO_LABEL, dtype=np.int64)
    weights = np.zeros(n_points)
    queries: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    top: list[tuple[str, np.ndarray, float, int]] = []  # valid top-level clusters: node, members, spread, label
    pending = deque([("", np.arange(n_points), 1)])  # (parent node, member indices, depth): breadth first

    def ask_level(parent: str, members: np.ndarray, depth: int) -> None:
        left = config.budget_per_round - len(queries)
        k = config.n_clusters if depth == 1 else min(config.sub_clusters, left, len(members))
        if k < (1 if depth == 1 else 2):
            return  # budget spent: these points keep what they have
        clustering = cluster_latents(z[members], k, config.method, config.metric, seed)
        decoded = decode(clustering.centres)
        centre_labels, centre_confidence = np.empty(k, dtype=np.int64), np.empty(k)
        sizes = np.bincount(clustering.assignments, minlength=k)
        for c in range(k):
            node = f"{parent}.{c}" if parent else str(c)
            centre_labels[c], centre_confidence[c] = book.ask(node, clustering.centres[c], decoded[c], sizes[c], oracle)
            queries.append({"node": node, "depth": depth, "label": int(centre_labels[c]),
                            "confidence": float(centre_confidence[c]), "size": int(sizes[c])})
            images.append(decoded[c])
        labels[members], weights[members] = propagate_labels(clustering, centre_labels, centre_confidence,
                                                             config.confidence, config.rate)
        for c in np.argsort(-sizes, kind="stable"):
            node = f"{parent}.{c}" if parent else str(c)
            inside = members[clustering.assignments == c]
            if centre_labels[c] == NO_LABEL and depth < config.max_depth and sizes[c] >= 2:
                pending.append((node, inside, depth + 1))
            elif depth == 1 and centre_labels[c] != NO_LABEL and sizes[c] >= 2:
                spread = float(((z[inside] - clustering.centres[c]) ** 2).sum())
                top.append((node, inside, spread, int(centre_labels[c])))

    while pending:
        ask_level(*pending.popleft())
    if config.refine == "spread" and config.max_depth >= 2:
        for node, inside, _, _ in sorted(top, key=lambda entry: -entry[2]):
            if config.budget_per_round - len(queries) < 2:
                break
            ask_level(node, inside, 2)
    return RoundLabels(labels, weights, queries, np.stack(images))


@dataclass
class ActiveRun:
    """A finished (or stopped) loop: one record per round, the model after the last round."""

    run_dir: Path
    config: ActiveConfig
    rounds: list[dict[str, Any]]
    model: torch.nn.Module
    preprocessor: Preprocessor


def _pool_indices(n_train: int, config: ActiveConfig) -> np.ndarray:
    """The training points the loop uses: all, or a fixed random subset of ``max_train``."""
    if config.max_train is None or config.max_train >= n_train:
        return np.arange(n_train)
    return np.sort(np.random.default_rng(config.seed).choice(n_train, config.max_train, replace=False))


def _check_model(name: str) -> None:
    cls = get_model_class(name)
    if not (cls.takes_label_weights and cls.has_embedding):
        raise ValueError(f"model {name!r} cannot run the active loop: it needs per-label weights and "
                         f"embed/decode methods (the beta-VAE 'betavae' has them)")


def _write_summary(run_dir: Path, config: ActiveConfig, records: list[dict[str, Any]], device: torch.device) -> None:
    from ..plots import plot_active_rounds

    atomic_write_json(run_dir / "rounds.json", {"config": dataclasses.asdict(config),
                                                "hardware": hardware_info(device), "rounds": records})
    plot_active_rounds(records, run_dir / "accuracy.png")


def _read_config(path: Path) -> "ActiveConfig":
    """active.json's options, or a one-line RunFileError naming the file and what is wrong."""
    saved = read_json(path, "active-labelling run's options, written by `pyro-sus active`")
    options = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(options, dict):
        raise RunFileError(f"{path} holds no 'config' object of options; restore it or start a new run folder")
    known = {f.name for f in dataclasses.fields(ActiveConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise RunFileError(f"{path}: unknown options {unknown} (known: {sorted(known)}); restore the file or start a "
                           f"new run folder")
    try:
        return ActiveConfig(**options)
    except (TypeError, ValueError) as err:
        raise RunFileError(f"{path}: {err}; restore the file or start a new run folder") from None


def read_round_labels(path: Path, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """A finished round's ``labels.npz`` (one label and one weight per training point)."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            missing = [name for name in ("labels", "weights") if name not in saved.files]
            if missing:
                raise RunFileError(f"{path} lacks the array '{missing[0]}'; delete it to label this round again")
            labels, weights = saved["labels"], saved["weights"]
    except RunFileError:
        raise
    except Exception as err:  # truncated, not a zip, pickled objects
        raise RunFileError(f"{path} is corrupt or not written by pyro_sus ({type(err).__name__}); delete it to "
                           f"label this round again") from None
    if labels.shape != (n_points,) or weights.shape != (n_points,):
        raise RunFileError(f"{path} holds {labels.shape} labels and {weights.shape} weights for {n_points} points; "
                           f"delete it to label this round again")
    return labels, weights


def run_active(config: ActiveConfig | None = None, run_dir: str | Path = "runs/active", *,
               oracle: Oracle | None = None, resume: bool = False, progress: bool = True,
               dataset: Dataset | None = None) -> ActiveRun:
    """Run (or with ``resume=True`` continue) the loop in ``run_dir``; see the module docstring.

    ``oracle`` overrides the configured one (e.g. your own object with ``answer(image)``)."""
    from ..plots import plot_centres

    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / "active.json").is_file():
            raise FileNotFoundError(f"{run_dir} is not an active-labelling run folder: active.json is missing")
        config = _read_config(run_dir / "active.json")
    else:
        config = config or ActiveConfig()
        if run_dir.exists() and any(run_dir.iterdir()):
            raise FileExistsError(f"run folder {run_dir} is not empty: choose another, or resume it (--resume)")
    _check_model(config.model)  # before loading any data
    data = dataset if dataset is not None else load_dataset(config.dataset, config.data_dir)
    pool = _pool_indices(len(data.x_train), config)
    x_raw, y_true = data.x_train[pool], data.y_train[pool]
    n_classes = int(data.classes.max()) + 1
    pre = Preprocessor.fit(x_raw, config.std_threshold)
    seed_everything(config.seed)  # fixes the initial weights
    model = build_model(config.model, where="active model_options", x_dim=pre.output_dim, n_slots=n_classes,
                        **config.model_options)
    if oracle is None:
        oracle = (SimulatedOracle(x_raw, y_true, config.oracle_confidence, config.oracle_neighbours,
                                  config.oracle_purity) if config.oracle == "simulated"
                  else InteractiveOracle(n_classes, data.image_shape, run_dir))
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_savez(run_dir / "preprocess.npz", **pre.to_arrays())
        atomic_write_json(run_dir / "active.json", {"config": dataclasses.asdict(config),
                                                    "oracle": type(oracle).__name__, "n_train": int(len(pool)),
                                                    "n_classes": n_classes})
    device = resolve_device(config.device)
    x = torch.tensor(pre.transform(x_raw), device=device)
    empty = x[:0]
    x_test = y_test = None
    if data.x_test is not None:
        keep = data.y_test >= 0
        x_test, y_test = torch.tensor(pre.transform(data.x_test[keep]), device=device), data.y_test[keep]
    truth_known = bool((y_true >= 0).all())

    @torch.no_grad()
    def decode(centres: np.ndarray) -> np.ndarray:
        mean = model.decode(torch.tensor(centres, dtype=x.dtype, device=device)).cpu().numpy()
        return pre.inverse_transform(mean)

    records: list[dict[str, Any]] = []
    answers_total = 0
    for round_index in range(config.rounds + 1):
        round_dir = run_dir / f"round_{round_index:02d}"
        if (round_dir / "round.json").is_file():  # finished before: take its weights and move on
            records.append(read_json(round_dir / "round.json", "record of a finished round"))
            answers_total = records[-1]["answers_total"]
            model.load_state_dict(load_checkpoint(round_dir / "model.pt", map_location=device))
            continue
        model.to(device)
        record: dict[str, Any] = {"round": round_index}
        started = time.perf_counter()
        if round_index == 0:
            training = TrainingData(empty, empty[:, 0].long(), x, empty, np.zeros(0, dtype=np.int64))
            epochs = config.warmup_epochs
            record.update(answers=0, invalid_answers=0, coverage=0.0, mean_weight=0.0, label_accuracy=None)
        else:
            round_dir.mkdir(parents=True, exist_ok=True)
            if (round_dir / "labels.npz").is_file():
                labels, weights = read_round_labels(round_dir / "labels.npz", len(x_raw))
                queries = read_json(round_dir / "queries.json", "questions asked in this round")
            else:
                model.eval()
                with torch.no_grad():
                    z = torch.cat([model.embed(chunk) for chunk in x.split(4096)]).cpu().numpy().astype(np.float64)
                book = AnswerBook(round_dir / "answers.json", n_classes)
                asked = label_round(z, decode, oracle, book, config, seed=config.seed + round_index)
                labels, weights, queries = asked.labels, asked.weights, asked.queries
                # queries.json first: labels.npz is the marker that this round's labelling is complete.
                atomic_write_json(round_dir / "queries.json", queries)
                atomic_savez(round_dir / "labels.npz", labels=labels, weights=weights)
                titles = [f"{q['node']}: " + ("invalid" if q["label"] == NO_LABEL else f"{q['label']} ({q['confidence']:.2g})")
                          for q in queries]
                plot_centres(asked.images, titles, data.image_shape, round_dir / "centres.png",
                             title=f"round {round_index}: decoded centres and answers")
            covered = weights > 0
            record.update(answers=len(queries), invalid_answers=sum(q["label"] == NO_LABEL for q in queries),
                          coverage=float(covered.mean()), mean_weight=float(weights.mean()),
                          label_accuracy=float((labels[covered] == y_true[covered]).mean())
                          if truth_known and covered.any() else None)
            training = TrainingData(x, torch.tensor(np.maximum(labels, 0), device=device), empty, empty,
                                    np.zeros(0, dtype=np.int64), torch.tensor(weights, dtype=x.dtype, device=device))
            epochs = config.epochs_per_round
        labelling_seconds = time.perf_counter() - started
        history = train(model, training, config.train_config(epochs, round_index), round_dir,
                        resume=(round_dir / "last.pt").is_file(), progress=progress)
        model.save(round_dir, "model")
        answers_total += record["answers"]
        model.eval()
        test_accuracy = None
        if x_test is not None and round_index > 0:  # before any label the head is untrained: no score
            # One slot per class, each its own class: the mapping is the identity, every class known.
            slots = model.predict_proba(x_test).argmax(-1).cpu().numpy()
            test_accuracy = score(slots, y_test, np.arange(n_classes), range(n_classes), n_classes)["accuracy"]
        record.update(answers_total=answers_total, epochs_total=config.warmup_epochs + round_index * config.epochs_per_round,
                      test_accuracy=test_accuracy, labelling_seconds=labelling_seconds,
                      train_seconds=sum(r["seconds"] for r in history))
        atomic_write_json(round_dir / "round.json", record)
        records.append(record)
        _write_summary(run_dir, config, records, device)
        if progress:
            accuracy = "n/a" if test_accuracy is None else f"{test_accuracy:.4f}"
            print(f"round {round_index}/{config.rounds}: {record['answers']} answers "
                  f"({record['invalid_answers']} invalid), coverage {record['coverage']:.1%}, "
                  f"test accuracy {accuracy}")
    if records and not (run_dir / "rounds.json").is_file():
        _write_summary(run_dir, config, records, device)
    return ActiveRun(run_dir, config, records, model, pre)
