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

The run folder holds ``active.json`` (options), ``rounds.json`` (one record per
finished round), ``accuracy.png``, and per round ``round_RR/``: ``answers.json`` (written after every
answer, so a stopped session resumes without asking again), ``queries.json``, ``labels.npz``,
``centres.png``, ``round.json`` and ``run/``, the round's training as an ordinary run folder (what
``pyro-sus train`` writes: run.json with the given split, split.npz with the round's labels and
weights, ``metrics.jsonl``, ``last.pt``, ``final.pt``, and from round 1 ``results.json``), which
``pyro_sus.load``, ``evaluate``, ``report`` and ``predict`` read as any run.
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

from ..api import fit
from ..data import Dataset, load_dataset
from ..io import RunFileError, atomic_savez, atomic_write_json, read_json
from ..models import get_model_class
from ..preprocess import Preprocessor, PreprocessSpec
from ..run import Run, evaluate, hardware_info, load
from ..spec import RunSpec, TrainConfig
from ..split import Split
from ..train import resolve_device
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
    """A finished loop: one record per round, the model after the last round and that round's run."""

    run_dir: Path
    config: ActiveConfig
    rounds: list[dict[str, Any]]
    model: torch.nn.Module
    preprocessor: Preprocessor
    #: The last round's run folder, read back (``predict``, ``embed``, ``evaluate``, its results).
    run: Run


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


def _read_config(run_dir: Path) -> "ActiveConfig":
    """The options of the loop in ``run_dir`` (its active.json), or a one-line error naming what is wrong."""
    path = run_dir / "active.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not an active-labelling run folder: active.json is missing")
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

    Each round trains as an ordinary run (:func:`pyro_sus.fit` on a given split: the pool's points
    with the round's propagated labels and weights, starting from the round before's weights) in
    ``round_RR/run``, and is scored there by :func:`pyro_sus.evaluate`: ``pyro_sus.load``, ``pyro-sus
    evaluate``, ``report`` and ``predict`` take it as any run. ``oracle`` overrides the configured one
    (e.g. your own object with ``answer(image)``)."""
    run_dir = Path(run_dir)
    config = _read_config(run_dir) if resume else _fresh_config(config, run_dir)
    _check_model(config.model)  # before loading any data
    data = dataset if dataset is not None else load_dataset(config.dataset, config.data_dir)
    pool = _pool_indices(len(data.x_train), config)
    x_raw, y_true = data.x_train[pool], data.y_train[pool]
    n_classes = int(data.classes.max()) + 1
    # The pool's preprocessing, the one every round's run fits on the same points: fitted here so a bad
    # threshold fails before anything is written, and used to put decoded centres in image layout.
    pre = Preprocessor.fit(x_raw, config.std_threshold)
    if oracle is None:
        oracle = (SimulatedOracle(x_raw, y_true, config.oracle_confidence, config.oracle_neighbours,
                                  config.oracle_purity) if config.oracle == "simulated"
                  else InteractiveOracle(n_classes, data.image_shape, run_dir))
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "active.json", {"config": dataclasses.asdict(config),
                                                    "oracle": type(oracle).__name__, "n_train": int(len(pool)),
                                                    "n_classes": n_classes})
    rounds = _Rounds(config, dataset, pool, n_classes, progress)
    records: list[dict[str, Any]] = []
    last: Run | None = None
    for round_index in range(config.rounds + 1):
        round_dir = run_dir / f"round_{round_index:02d}"
        if (round_dir / "round.json").is_file():  # finished before: its run is the next round's start
            records.append(read_json(round_dir / "round.json", "record of a finished round"))
            last = None
            continue
        last = last or (rounds.load(run_dir / f"round_{round_index - 1:02d}") if round_index else None)
        started = time.perf_counter()
        labels = weights = None
        record: dict[str, Any] = {"round": 0, "answers": 0, "invalid_answers": 0, "coverage": 0.0,
                                  "mean_weight": 0.0, "label_accuracy": None}
        if round_index > 0:
            labels, weights, queries = _round_labels(round_dir, last, x_raw, pre, oracle, config, n_classes,
                                                     data.image_shape, round_index)
            record = _labelling_record(round_index, labels, weights, queries, y_true)
        labelling_seconds = time.perf_counter() - started
        last = rounds.train(round_dir, round_index, labels, weights)
        answers_total = (records[-1]["answers_total"] if records else 0) + record["answers"]
        # Before any label the head is untrained: round 0 is not scored.
        test = (last.results or {}).get("test") if round_index > 0 else None
        record.update(answers_total=answers_total,
                      epochs_total=config.warmup_epochs + round_index * config.epochs_per_round,
                      test_accuracy=None if test is None else test["accuracy"], labelling_seconds=labelling_seconds,
                      train_seconds=last.record.train_wall_seconds)
        atomic_write_json(round_dir / "round.json", record)
        records.append(record)
        _write_summary(run_dir, config, records, rounds.device)
        if progress:
            accuracy = "n/a" if record["test_accuracy"] is None else f"{record['test_accuracy']:.4f}"
            print(f"round {round_index}/{config.rounds}: {record['answers']} answers "
                  f"({record['invalid_answers']} invalid), coverage {record['coverage']:.1%}, "
                  f"test accuracy {accuracy}")
    if records and not (run_dir / "rounds.json").is_file():
        _write_summary(run_dir, config, records, rounds.device)
    last = last or rounds.load(run_dir / f"round_{config.rounds:02d}")
    return ActiveRun(run_dir, config, records, last.model, pre, last)


def _fresh_config(config: ActiveConfig | None, run_dir: Path) -> ActiveConfig:
    """The options of a new loop, whose folder must be empty or absent."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run folder {run_dir} is not empty: choose another, or resume it (--resume)")
    return config or ActiveConfig()


def _labelling_record(round_index: int, labels: np.ndarray, weights: np.ndarray, queries: list[dict[str, Any]],
                      y_true: np.ndarray) -> dict[str, Any]:
    """What a round's labelling did: answers, invalid ones, coverage, mean weight, and (where the data
    holds every true label) how many propagated labels are right."""
    covered = weights > 0
    return {"round": round_index, "answers": len(queries),
            "invalid_answers": sum(q["label"] == NO_LABEL for q in queries),
            "coverage": float(covered.mean()), "mean_weight": float(weights.mean()),
            "label_accuracy": float((labels[covered] == y_true[covered]).mean())
            if bool((y_true >= 0).all()) and covered.any() else None}


class _Rounds:
    """Each round's run: a fit on the pool with the round's labels, from the round before's weights."""

    def __init__(self, config: ActiveConfig, given: Dataset | None, pool: np.ndarray, n_classes: int,
                 progress: bool) -> None:
        self.config, self.pool, self.progress = config, pool, progress
        self.device = resolve_device(config.device)
        # Data given as an object is handed to every fit and evaluation; data named in the config is
        # named to a fresh fit (so run.json says where it lies) and found there afterwards.
        self.given = given
        self.classes = tuple(range(n_classes))  # one slot per class, slot c for class c

    def load(self, round_dir: Path) -> Run:
        """A finished round's run."""
        return load(round_dir / "run", device=str(self.device))

    def split(self, round_index: int, labels: np.ndarray | None, weights: np.ndarray | None) -> Split:
        """Round 0: every pool point unlabelled. Later rounds: every pool point labelled with its
        propagated label (-1 and weight 0 where none)."""
        empty = np.zeros(0, dtype=np.int64)
        if labels is None:
            return Split(self.classes, (), 0, empty, self.pool, empty, self.config.seed)
        return Split(self.classes, (), 0, self.pool, empty, empty, self.config.seed, (), labels.astype(np.int64),
                     weights.astype(np.float64))

    def train(self, round_dir: Path, round_index: int, labels: np.ndarray | None, weights: np.ndarray | None) -> Run:
        """Train (or finish, or continue) the round's run in ``round_dir/run``, scored after round 0."""
        folder, config = round_dir / "run", self.config
        score = round_index > 0
        if (folder / "final.pt").is_file():  # trained before the round's record was written
            run = self.load(round_dir)
            if score and run.results is None:
                run.results = evaluate(run, dataset=self.given)
            return run
        if (folder / "run.json").is_file():
            run = fit(run_dir=folder, resume=True, progress=self.progress, evaluate_after=score, dataset=self.given)
        else:
            start = None if round_index == 0 else round_dir.parent / f"round_{round_index - 1:02d}" / "run" / "final.pt"
            epochs = config.warmup_epochs if round_index == 0 else config.epochs_per_round
            spec = RunSpec(config.model, preprocess=PreprocessSpec(config.std_threshold),
                           model_options=dict(config.model_options), train=config.train_config(epochs, round_index),
                           init_from=None if start is None else str(start.resolve()))
            run = fit(spec=spec, split=self.split(round_index, labels, weights), run_dir=folder,
                      progress=self.progress, evaluate_after=score,
                      **({"dataset": self.given} if self.given is not None
                         else {"dataset": config.dataset, "data_dir": config.data_dir}))
        assert run is not None  # no stop_after: the run finished
        return run


def _round_labels(round_dir: Path, last: Run, x_raw: np.ndarray, pre: Preprocessor, oracle: Oracle,
                  config: ActiveConfig, n_classes: int, image_shape: tuple[int, ...] | None, round_index: int
                  ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """The round's labels and weights per pool point and its questions: saved ones, or asked now."""
    from ..plots import plot_centres

    round_dir.mkdir(parents=True, exist_ok=True)
    if (round_dir / "labels.npz").is_file():
        labels, weights = read_round_labels(round_dir / "labels.npz", len(x_raw))
        return labels, weights, read_json(round_dir / "queries.json", "questions asked in this round")
    model = last.model

    @torch.no_grad()
    def decode(centres: np.ndarray) -> np.ndarray:
        mean = model.decode(torch.tensor(centres, dtype=torch.float32, device=model.device)).cpu().numpy()
        return pre.inverse_transform(mean)

    z = last.embed(x_raw).astype(np.float64)
    book = AnswerBook(round_dir / "answers.json", n_classes)
    asked = label_round(z, decode, oracle, book, config, seed=config.seed + round_index)
    # queries.json first: labels.npz is the marker that this round's labelling is complete.
    atomic_write_json(round_dir / "queries.json", asked.queries)
    atomic_savez(round_dir / "labels.npz", labels=asked.labels, weights=asked.weights)
    titles = [f"{q['node']}: " + ("invalid" if q["label"] == NO_LABEL else f"{q['label']} ({q['confidence']:.2g})")
              for q in asked.queries]
    plot_centres(asked.images, titles, image_shape, round_dir / "centres.png",
                 title=f"round {round_index}: decoded centres and answers")
    return asked.labels, asked.weights, asked.queries
