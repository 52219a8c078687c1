"""The ``pyro-sus`` command: train, evaluate, predict, active, reproduce, models."""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import importlib
import io
import json
import os
import shlex
import sys
import warnings
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser"]

JIT_HELP = ("trace the loss once and replay the trace every step (TorchScript): same loss, less Python work "
            "per step; models with traceable = True")


#: Flags of ``train`` that set a field of the run's specification: dest -> (part, field). Their
#: defaults are the spec's (one place); a test checks the parser against this table.
SPEC_FLAGS: dict[str, tuple[str, str]] = {
    "hidden_classes": ("split", "hidden_classes"), "unseen_classes": ("split", "unseen_classes"),
    "labels_per_class": ("split", "labels_per_class"), "labelled_fraction": ("split", "labelled_fraction"),
    "extra_slots": ("split", "extra_slots"), "validation_fraction": ("split", "validation_fraction"),
    "split_seed": ("split", "seed"), "std_threshold": ("preprocess", "std_threshold"),
    "prior": ("prior", "kind"), "known_mass": ("prior", "known_mass"), "class_probs": ("prior", "probs"),
    "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"), "lr": ("train", "learning_rate"),
    "adam_beta1": ("train", "adam_beta1"), "lr_schedule": ("train", "lr_schedule"),
    "clip_value": ("train", "clip_value"), "labelled_scale": ("train", "labelled_scale"),
    "seed": ("train", "seed"), "device": ("train", "device"), "checkpoint_every": ("train", "checkpoint_every"),
    "jit": ("train", "jit"), "select": ("train", "select"), "patience": ("train", "patience"),
    "tensorboard": ("train", "tensorboard"), "precision": ("train", "precision"),
}


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Every option with a value shows its default, also one given no help text; an option whose help
    says its default already, or whose default is "not given" (None, a flag off), shows no second one."""

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and action.option_strings and self._shows_default(action):
            action = copy.copy(action)  # argparse formats no help at all for an option without text
            action.help = self._default_text(action)
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not self._shows_default(action):
            return text
        return f"{text} {self._default_text(action)}"

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        # (By identity: a default of 0 is a value to show, though 0 == False.)
        return not any(action.default is v for v in (None, False, argparse.SUPPRESS)) and action.nargs != 0

    @staticmethod
    def _default_text(action: argparse.Action) -> str:
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else "%(default)s"
        return f"(default: {shown or 'none'})"


def _model_default(config: str, name: str) -> str:
    """A model option's default as the model's config declares it (``models.base.GenerativeConfig`` ...)."""
    from . import models

    value = {f.name: f.default for f in dataclasses.fields(getattr(models, config))}[name]
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _model_option(group: argparse._ArgumentGroup, flag: str, config: str, text: str, **options) -> None:
    """A model option (default None: the model's own), its help ending in the default ``config`` declares."""
    name = flag.lstrip("-").replace("-", "_")
    group.add_argument(flag, default=None, help=f"{text} (default: {_model_default(config, name)})", **options)


def _data_default_help(name: str) -> str:
    """Help naming a training option's default and where a data set has its own (data.TRAIN_DEFAULTS)."""
    from .data import TRAIN_DEFAULTS
    from .spec import TrainConfig

    own = [f"{dataset}: {values[name]:g}" for dataset, values in TRAIN_DEFAULTS.items() if name in values]
    default = f"{getattr(TrainConfig, name):g}"
    return f"(default: {default}" + (f"; {', '.join(own)}, the data set's own)" if own else ")")


def _spec_default(dest: str):
    """The default of a SPEC_FLAGS flag: its field's default in the run specification."""
    from .spec import PreprocessSpec, PriorSpec, SplitSpec
    from .spec import TrainConfig

    part, name = SPEC_FLAGS[dest]
    default = getattr({"split": SplitSpec, "preprocess": PreprocessSpec, "prior": PriorSpec,
                       "train": TrainConfig}[part], name)
    return list(default) if isinstance(default, tuple) else default


TRAIN_HELP = "split a data set, train a model, evaluate it"
ACTIVE_HELP = "active labelling from zero labels: cluster, ask about centres, retrain"


def _train_parser(sub: argparse._SubParsersAction) -> None:
    # Every choice comes from where the option is checked (one source).
    from .api import BASELINES
    from .models.base import LIKELIHOODS
    from .models.latent_classifier import BOUNDS
    from .nn import PRECISIONS
    from .posteriors import FLOW_KINDS
    from .spec import PRIOR_KINDS
    from .spec import LR_SCHEDULES, SELECTIONS

    d = _spec_default
    p = sub.add_parser("train", help=TRAIN_HELP, formatter_class=_DefaultsShown)
    p.add_argument("--model", default="gmdgm", help="registered model name (see `pyro-sus models`)")
    p.add_argument("--dataset", default=None,
                   help="digits (default), mnist, fashion-mnist, har (UCI HAR layout), or a path to a .npz; with "
                        "--resume: where the run's data moved to")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ and fashion-mnist/ (else $PYRO_SUS_DATA)")
    p.add_argument("--download", action="store_true", help="fetch MNIST/Fashion-MNIST with torchvision (needs network)")
    p.add_argument("--out", default="runs/latest", help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out with the options saved there (only --dataset, "
                        "--data-dir, --device, --stop-after and --no-progress may be given with it)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="train only up to this epoch now (keeps the full schedule); finish later with --resume")
    s = p.add_argument_group("split")
    s.add_argument("--hidden-classes", type=int, nargs="*", default=d("hidden_classes"),
                   help="classes that keep no labels")
    s.add_argument("--unseen-classes", type=int, nargs="*", default=d("unseen_classes"),
                   help="classes withheld from training and validation (test only): an open-set check, AUROC in "
                        "results.json")
    labels = s.add_mutually_exclusive_group()
    labels.add_argument("--labels-per-class", type=int, default=d("labels_per_class"))
    labels.add_argument("--labelled-fraction", type=float, default=d("labelled_fraction"),
                        help="fraction of each known class labelled (default: every label the data has)")
    s.add_argument("--extra-slots", type=int, default=d("extra_slots"),
                   help="slots for discovered classes (default 2 x hidden)")
    s.add_argument("--validation-fraction", type=float, default=d("validation_fraction"))
    s.add_argument("--split-seed", type=int, default=d("split_seed"), help="default: --seed")
    s.add_argument("--std-threshold", type=float, default=d("std_threshold"),
                   help="keep input dims with training std above this")
    s.add_argument("--keep-all-dims", action="store_true", help="skip the std filter")
    m = p.add_argument_group("model")
    m.add_argument("--prior", choices=[k for k in PRIOR_KINDS if k != "given"], default=d("prior"),
                   help="class prior p(y) (your own: --class-probs)")
    m.add_argument("--known-mass", type=float, default=d("known_mass"), help="prior mass on known classes (sus prior)")
    m.add_argument("--class-probs", type=float, nargs="+", default=d("class_probs"),
                   help="your own class prior: one number per slot (known classes ascending, then extra slots)")
    m.add_argument("--posterior", default=None, help="posterior family for z: normal (default), flow, or a registered one")
    m.add_argument("--flow-layers", type=int, default=None, help="number of flow transforms (--posterior flow)")
    m.add_argument("--flow-kind", choices=FLOW_KINDS, default=None, help="flow layer type (--posterior flow)")
    m.add_argument("--latent-prior", default=None,
                   help="p(z|y) family: standard_normal, class_gaussian, mixture, or a registered one (default: the model's)")
    m.add_argument("--prior-components", type=int, default=None, help="components per slot (--latent-prior mixture)")
    _model_option(m, "--a-dim", "AuxiliaryDGMConfig", "auxiliary latent size (am2, agmdgm)", type=int)
    _model_option(m, "--labelled-weight", "LatentClassifierConfig", "lambda of the latent-classifier VAE", type=float)
    _model_option(m, "--unlabelled-bound", "LatentClassifierConfig", "latent-classifier VAE: E_p(y|z) log p(x|y,z) "
                  "(paper) or log sum_y p(y|z)p(x|y,z) (exact)", choices=BOUNDS)
    _model_option(m, "--z-dim", "GenerativeConfig", "size of the latent z", type=int)
    _model_option(m, "--hidden-dims", "ModelConfig", "widths of every MLP's hidden layers", type=int, nargs="+")
    m.add_argument("--activation", default=None,
                   help="hidden-layer nonlinearity of the MLPs: relu (default) or softplus (Pyro's SS-VAE, Kingma et al.)")
    _model_option(m, "--likelihood", "GenerativeConfig", "p(x|...)", choices=LIKELIHOODS)
    _model_option(m, "--gaussian-scale", "GenerativeConfig", "fixed sd of the Gaussian likelihood", type=float)
    m.add_argument("--alpha", type=float, default=None,
                   help=f"classifier weight on labelled data (default: {_model_default('DGMConfig', 'alpha')} for the "
                        f"M2 family, {_model_default('M1Config', 'alpha')} for m1)")
    m.add_argument("--init-from", default=None, metavar="RUN",
                   help="start from the weights of another run of the same model and sizes (its folder, or a "
                        "final.pt) instead of the seed's, e.g. to train on with new labels")
    m.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other field of the model's config as JSON, or a plain string (e.g. encoder=conv, "
                        "w_assignment=5); repeatable")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=d("epochs"), help=_data_default_help("epochs"))
    t.add_argument("--batch-size", type=int, default=d("batch_size"), help="per step: this many labelled + unlabelled")
    t.add_argument("--lr", type=float, default=d("lr"), help=_data_default_help("learning_rate"))
    t.add_argument("--adam-beta1", type=float, default=d("adam_beta1"),
                   help="Adam's first-moment decay (Pyro's SS-VAE run: 0.95)")
    t.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d("lr_schedule"))
    t.add_argument("--clip-value", type=float, default=d("clip_value"), help="gradient value clipping; 0 disables")
    t.add_argument("--labelled-scale", type=_labelled_scale, default=d("labelled_scale"),
                   help="weight of each step's labelled batch against its unlabelled one: batch (1, Willetts), "
                        "dataset (labelled/unlabelled set sizes, Kingma and Pyro's SS-VAE) or a number")
    t.add_argument("--no-binarize", action="store_true", help="no dynamic binarisation of batches")
    t.add_argument("--seed", type=int, default=d("seed"))
    t.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="one run per seed, in OUT/seed<N>, trained together as one stacked model where the model "
                        "stacks (one seed: OUT itself, as --seed)")
    t.add_argument("--no-stack", action="store_true", help="with --seeds: train the runs one after another")
    t.add_argument("--baseline", choices=BASELINES, default=None,
                   help="also fit this baseline on the same split (RUN/baselines/NAME) and print the model's margin "
                        "over it")
    t.add_argument("--device", default=d("device"), help="auto, cpu, cuda or cuda:N")
    t.add_argument("--checkpoint-every", type=int, default=d("checkpoint_every"), help="epochs between checkpoints")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--jit", action="store_true", help=JIT_HELP)
    t.add_argument("--select", choices=SELECTIONS, default=d("select"),
                   help="the model a run hands back: the last epoch's, or the one with the best validation "
                        "accuracy (validation split only)")
    t.add_argument("--patience", type=int, default=d("patience"),
                   help="with --select best-validation: stop after this many epochs without a better one")
    t.add_argument("--tensorboard", action="store_true",
                   help="also log each epoch's record to RUN/tensorboard (pip install 'pyro_sus[tensorboard]')")
    t.add_argument("--precision", choices=list(PRECISIONS), default=d("precision"),
                   help="what the networks compute at in training (bf16: bfloat16 autocast; log-probabilities "
                        "and the loss stay float32)")


def _active_parser(sub: argparse._SubParsersAction) -> None:
    from .active import CLUSTER_METHODS, CONFIDENCE_FUNCTIONS, METRICS, ORACLES, REFINE, ActiveConfig

    d = ActiveConfig()
    p = sub.add_parser("active", help=ACTIVE_HELP, formatter_class=_DefaultsShown)
    p.add_argument("--dataset", default=d.dataset, help="digits, mnist, fashion-mnist, har (UCI HAR layout), or a path to a .npz")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ and fashion-mnist/ (else $PYRO_SUS_DATA)")
    p.add_argument("--out", default="runs/active", help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved options; saved answers are not asked again")
    p.add_argument("--model", default=d.model, help="a model with per-label weights and embed/decode")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a field of the model's config (e.g. beta=1, z_dim=10); repeatable")
    p.add_argument("--rounds", type=int, default=d.rounds, help="labelling rounds after the unsupervised warm-up")
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help="unsupervised epochs before round 1")
    p.add_argument("--epochs-per-round", type=int, default=d.epochs_per_round)
    p.add_argument("--clusters", type=int, default=d.n_clusters, help="top-level clusters (answers) per round")
    p.add_argument("--sub-clusters", type=int, default=d.sub_clusters, help="sub-clusters of a cluster whose centre is invalid")
    p.add_argument("--depth", type=int, default=d.max_depth, help="levels of clustering (1: no sub-clustering)")
    p.add_argument("--budget", type=int, default=d.budget_per_round, help="answers per round at most")
    p.add_argument("--method", choices=CLUSTER_METHODS, default=d.method)
    p.add_argument("--metric", choices=METRICS, default=d.metric, help="distance to the centre (k-means confidence)")
    p.add_argument("--refine", choices=REFINE, default=d.refine,
                   help="spread: spend budget left after invalid centres on sub-clusters of the widest valid clusters "
                        "(our extension; none = the paper)")
    p.add_argument("--confidence", choices=CONFIDENCE_FUNCTIONS, default=d.confidence, help="f(d): exp(-a d) or exp(-a d^2)")
    p.add_argument("--rate", type=float, default=d.rate, help="a in f(d)")
    p.add_argument("--oracle", choices=ORACLES, default=d.oracle,
                   help="simulated: true label of the nearest training image; interactive: you answer in the terminal")
    p.add_argument("--oracle-confidence", type=float, default=d.oracle_confidence, help="p_c of the simulated oracle")
    p.add_argument("--max-train", type=int, default=None, help="use a random subset of this many training points")
    p.add_argument("--std-threshold", type=float, default=d.std_threshold,
                   help="drop input dimensions whose sd over the training images is at most this")
    p.add_argument("--keep-all-dims", action="store_true",
                   help="skip the std filter (the conv networks, --model-option networks=conv, read every pixel)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true")


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. ``commands``: only these commands get their options (``train`` and
    ``active`` read their defaults from modules that load torch, seconds); the others are listed with
    their help alone. None: every command, complete."""
    def full(command: str) -> bool:
        return commands is None or command in commands

    parser = argparse.ArgumentParser(prog="pyro-sus", description=__doc__)
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (e.g. one registering your own models, priors or posteriors)")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub) if full("train") else sub.add_parser("train", help=TRAIN_HELP)
    e = sub.add_parser("evaluate", help="score a run: honest / paper-protocol / Hungarian accuracy, NMI, ARI")
    e.add_argument("run_dir")
    e.add_argument("--dataset", default=None, help="where the run's data moved to (default: the place in run.json)")
    e.add_argument("--data-dir", default=None, help="where the run's data folder moved to")
    rp = sub.add_parser("report", help="what a run discovered: per slot size, majority class, purity; per class "
                                       "recall; hidden classes found, a class counting as found when the discovered "
                                       "slots mapped to it hold at least 50%% of its validation points at purity at "
                                       "least 50%% (report.md, report.json, slot_counts.png, discovered.png)")
    rp.add_argument("run_dir")
    rp.add_argument("--dataset", default=None, help="where the run's data moved to (default: the place in run.json)")
    rp.add_argument("--data-dir", default=None, help="where the run's data folder moved to")
    pr = sub.add_parser("predict", help="classify new data with a trained run")
    pr.add_argument("run_dir")
    pr.add_argument("input", help=".npz (array 'x', else its first array) or .npy of raw inputs")
    pr.add_argument("--output", default=None, help=".csv or .npz (default: INPUT stem + _predictions.csv)")
    pr.add_argument("--overwrite", action="store_true", help="replace --output if it exists (never the input)")
    pr.add_argument("--flag-unknown", type=float, default=None, metavar="Q",
                    help="mark points whose fit score lies below the validation split's Q-quantile (e.g. 0.01) "
                         "as fitting no slot (column fits_no_slot)")
    c = sub.add_parser("compare", help="runs side by side: honest accuracy (all, known, novel), GCD All / Old / New, "
                                       "NMI, open-set AUROC, epochs, wall time, from each run's results.json")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or folders of seed runs (seed0, seed1, ...)")
    c.add_argument("--csv", default=None, metavar="PATH", help="also save the table as CSV (scores as fractions)")
    c.add_argument("--overwrite", action="store_true", help="replace --csv if it exists")
    _active_parser(sub) if full("active") else sub.add_parser("active", help=ACTIVE_HELP)
    _reproduce_parser(sub) if full("reproduce") else sub.add_parser("reproduce", help=REPRODUCE_HELP)
    sub.add_parser("models", help="list registered models, posterior families and latent priors")
    return parser


REPRODUCE_HELP = "reproduce a paper's table: runs, aggregation, our number beside the paper's"


def _reproduce_parser(sub: argparse._SubParsersAction) -> None:
    from .nn import PRECISIONS
    from .sweep import ENGINES
    from .spec import TrainConfig

    r = sub.add_parser("reproduce", help=REPRODUCE_HELP, formatter_class=_DefaultsShown)
    r.add_argument("name", nargs="?", help="experiment (see --list)")
    r.add_argument("--list", action="store_true", help="list the experiments with their rows and paper numbers")
    r.add_argument("--seeds", type=int, default=None, help="runs per row (default: the paper's)")
    r.add_argument("--epochs", type=int, default=None,
                   help="epochs per run, its schedule squeezed into them (default: the paper's); for a short run that "
                        "can be continued, use --stop-after")
    r.add_argument("--stop-after", type=int, default=None, metavar="EPOCH",
                   help="train each run only to this epoch of its schedule (the paper's) and score it there (REDUCED, "
                        "a snapshot); run again with a later epoch, or without, to continue the same runs")
    r.add_argument("--rows", nargs="+", default=None, metavar="ROW", help="only these rows (labels as in --list)")
    r.add_argument("--jobs", type=int, default=1,
                   help="processes at once, on one GPU or the CPU cores; each trains a row's seeds together as one "
                        "stacked model (with --no-stack: one run)")
    r.add_argument("--no-stack", action="store_true",
                   help="train every seed in its own process (default: a row's seeds as one stacked model, where "
                        "the model stacks)")
    r.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    r.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                   help="local: --jobs processes on this machine; ray: one Ray task per run, as many at once as the "
                        "cluster's CPUs allow (pip install 'pyro_sus[ray]')")
    r.add_argument("--address", default=None,
                   help="with --engine ray: the Ray cluster to join (e.g. ray://head:10001 or auto; default: start "
                        "one on this machine)")
    r.add_argument("--device", default=TrainConfig.device, help="auto, cpu, cuda or cuda:N")
    r.add_argument("--data-dir", default=None, help="folder holding mnist/, fashion-mnist/, 'UCI HAR Dataset/'")
    r.add_argument("--out", default="runs/reproduce", help="root folder; the experiment's runs go in OUT/NAME")
    r.add_argument("--smoke", action="store_true",
                   help="tiny data, 1 epoch (unless --epochs), 1 seed (unless --seeds): checks the setup, not a result")
    r.add_argument("--jit", action="store_true", help=JIT_HELP)
    r.add_argument("--precision", choices=list(PRECISIONS), default=TrainConfig.precision,
                   help="what the networks compute at in training (see train --precision)")
    r.add_argument("--write-results", nargs="?", const="docs/RESULTS.md", default=None, metavar="PATH",
                   help="write the generated section into this results page")


def _cmd_train(args: argparse.Namespace) -> int:
    from .api import fit, fit_seeds
    from .run import seed_folders

    def given(options: dict) -> dict:
        return {key: value for key, value in options.items() if value is not None}

    model_options = given({
        "z_dim": args.z_dim, "hidden_dims": args.hidden_dims, "activation": args.activation,
        "likelihood": args.likelihood,
        "gaussian_scale": args.gaussian_scale, "alpha": args.alpha, "posterior": args.posterior,
        "latent_prior": args.latent_prior, "a_dim": args.a_dim, "labelled_weight": args.labelled_weight,
        "unlabelled_bound": args.unlabelled_bound,
        "posterior_options": given({"transforms": args.flow_layers, "kind": args.flow_kind}) or None,
        "latent_prior_options": given({"components": args.prior_components}) or None})
    model_options.update(_parse_options(args.model_option))
    # An option not given that the data set has its own default for takes that one (data.TRAIN_DEFAULTS).
    from .data import train_defaults

    given = {name for dest, (part, name) in SPEC_FLAGS.items() if part == "train" and dest in args.given}
    own = train_defaults(args.dataset, given)
    train_options = {name: getattr(args, dest) for dest, (part, name) in SPEC_FLAGS.items()
                     if part == "train" and name not in own}
    train_options.update(clip_value=args.clip_value or None, binarize=not args.no_binarize)  # 0 disables clipping
    if args.resume:
        # The device may change on resume (a run trained on a GPU continues on the CPU); only when given.
        device = args.given.get("device")
        if not (Path(args.out) / "run.json").exists() and seed_folders(args.out):
            runs = fit_seeds(run_dir=args.out, dataset=args.dataset, data_dir=args.data_dir, resume=True,
                             device=device, stop_after=args.stop_after, progress=not args.no_progress,
                             stacked=not args.no_stack)
            return _report_seeds(runs, args)
        run = fit(run_dir=args.out, dataset=args.dataset, data_dir=args.data_dir, resume=True, device=device,
                  stop_after=args.stop_after, progress=not args.no_progress)
        return _report_train(run, args)
    options = dict(hidden_classes=args.hidden_classes, unseen_classes=args.unseen_classes,
                   labels_per_class=args.labels_per_class, labelled_fraction=args.labelled_fraction,
                   extra_slots=args.extra_slots, validation_fraction=args.validation_fraction, split_seed=args.split_seed,
                   std_threshold=None if args.keep_all_dims else args.std_threshold, prior=args.prior,
                   known_mass=args.known_mass, class_probs=args.class_probs, model_options=model_options,
                   init_from=args.init_from)
    if args.seeds is not None:
        if "seed" in args.given:
            raise ValueError("give --seed or --seeds, not both")
        if len(args.seeds) > 1:
            train_options.pop("seed")
            runs = fit_seeds(args.model, args.dataset, args.out, seeds=args.seeds, stacked=not args.no_stack,
                             data_dir=args.data_dir, download=args.download, train_options=train_options,
                             stop_after=args.stop_after, progress=not args.no_progress, **options)
            return _report_seeds(runs, args)
        train_options["seed"] = args.seeds[0]
    elif args.no_stack:
        raise ValueError("--no-stack goes with --seeds")
    run = fit(args.model, args.dataset, args.out, data_dir=args.data_dir, download=args.download,
              train_options=train_options, stop_after=args.stop_after, progress=not args.no_progress, **options)
    return _report_train(run, args)


def _report_seeds(runs: list, args: argparse.Namespace) -> int:
    """Each seed's results, then the test accuracy's mean and spread over the seeds."""
    if any(run is None for run in runs):
        print(f"stopped after epoch {args.stop_after}; continue with: pyro-sus train --resume --out "
              f"{shlex.quote(args.out)}")
        return 0
    from .run import run_accuracy

    for run in runs:
        _print_results(run.results, run.run_dir)
        _print_baseline(run, args)
    accuracies = [a for a in map(run_accuracy, runs) if a is not None]
    if accuracies:
        spread = np.std(accuracies, ddof=1) if len(accuracies) > 1 else 0.0
        print(f"{len(accuracies)} seeds: accuracy {np.mean(accuracies):.3f} +- {spread:.3f} (mean +- sd over seeds)")
    return 0


def _report_train(run, args: argparse.Namespace) -> int:
    if run is None:
        print(f"stopped after epoch {args.stop_after}; continue with: pyro-sus train --resume --out "
              f"{shlex.quote(args.out)}")
        return 0
    _print_results(json.loads((run.run_dir / "results.json").read_text()), run.run_dir)
    own = run.record.data_set_defaults
    if own:  # options not given that took the data set's own default, not TrainConfig's
        print(f"  defaults of {run.spec.data.dataset} (pyro_sus.data.TRAIN_DEFAULTS): "
              + ", ".join(f"{key} {value:g}" for key, value in own.items()))
    _print_baseline(run, args)
    return 0


def _print_baseline(run, args: argparse.Namespace) -> None:
    """With ``--baseline``: the baseline fitted on the run's split, and the model's margin over it."""
    if not getattr(args, "baseline", None):
        return
    from .api import fit_baseline
    from .run import run_accuracy

    baseline = fit_baseline(run, args.baseline)
    ours, theirs = run_accuracy(run), run_accuracy(baseline)
    part = baseline.results.get("test") or baseline.results.get("validation") or {}
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
    margin = "" if ours is None or theirs is None else (
        f"; {run.spec.model} {'beats' if ours >= theirs else 'trails'} it by {100 * abs(ours - theirs):.1f} points")
    print(f"  {args.baseline} on the same split: accuracy {fmt(theirs)} (known {fmt(part.get('known_accuracy'))}, "
          f"novel {fmt(part.get('novel_accuracy'))}){margin} [{baseline.run_dir}]")


def _labelled_scale(text: str) -> str | float:
    """``--labelled-scale``: a named rule, else a number (TrainConfig checks which values are allowed)."""
    try:
        return float(text)
    except ValueError:
        return text


def _parse_options(pairs: Sequence[str]) -> dict:
    """``KEY=VALUE`` pairs; VALUE is read as JSON when it parses, else kept as a string."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-option wants KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _print_results(results: dict, run_dir: Path) -> None:
    print(f"{results['model']} on {results['dataset']} ({results['regime']}, {results['n_slots']} slots)")
    for part in ("validation", "test"):
        if part in results:
            r = results[part]
            fmt = lambda v: "  n/a" if v is None else f"{v:.3f}"  # noqa: E731
            print(f"  {part:10s} accuracy {fmt(r['accuracy'])}  known {fmt(r['known_accuracy'])}  "
                  f"novel {fmt(r['novel_accuracy'])}  | paper-protocol {fmt(r['paper_protocol_accuracy'])}  "
                  f"hungarian {fmt(r['hungarian_accuracy'])}  NMI {fmt(r['nmi'])}  ARI {fmt(r['ari'])}")
    for part, r in results.get("gcd", {}).items():
        if part in ("unlabelled_train", "test"):
            print(f"  GCD ({part.replace('_', ' ')}): All {fmt(r['all'])}  Old {fmt(r['old'])}  New {fmt(r['new'])}")
    if "auroc_unseen" in results.get("open_set", {}):
        o = results["open_set"]
        print(f"  open set: classes {o['unseen_test_classes']} unseen in training, AUROC {o['auroc_unseen']:.3f} "
              f"({o['score']}); flagged at the validation 5% quantile: unseen {o['flagged_at_validation_5pct']['unseen']:.3f}, "
              f"seen {o['flagged_at_validation_5pct']['seen']:.3f}")
    if "discovery" in results:
        d = results["discovery"]
        print(f"  discovery: {d['n_found']} of {d['n_hidden']} hidden classes found {d['found']}, "
              f"{d['discovered_slots_in_use']} discovered slots in use (report.md)")
    print(f"  results: {run_dir / 'results.json'}")


def _read_inputs(path: Path) -> np.ndarray:
    from .data import read_arrays

    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.suffix not in (".npy", ".npz"):
        raise ValueError(f"cannot read {path}: give a .npy or .npz file")
    arrays = read_arrays(path, "the inputs")
    return arrays["x"] if "x" in arrays else next(iter(arrays.values()))


def _prediction_target(source: Path, output: str | None, overwrite: bool, run_dir: Path) -> Path:
    """Where predictions go: checked before any work, never the input, never an existing file unasked,
    never inside the run folder (whose files the run itself reads and writes)."""
    target = Path(output) if output else source.with_name(source.stem + "_predictions.csv")
    if target.suffix not in (".csv", ".npz"):
        raise ValueError(f"--output must end in .csv or .npz, got {target}")
    if run_dir.is_dir() and (target.resolve().parent == run_dir.resolve() or
                             run_dir.resolve() in target.resolve().parents):
        raise FileExistsError(f"--output {target} lies in the run folder {run_dir}, whose files belong to the run; "
                              f"write predictions elsewhere")
    if target.exists():
        if source.exists() and os.path.samefile(target, source):
            raise FileExistsError(f"--output {target} is the input file: predictions never replace their input; "
                                  f"choose another --output")
        if target.is_dir():
            raise FileExistsError(f"--output {target} is a folder; name a .csv or .npz file")
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass --overwrite to replace it, or choose another --output")
    return target


def _cmd_predict(args: argparse.Namespace) -> int:
    from .run import load
    from .io import atomic_savez, atomic_write_text

    source = Path(args.input)
    target = _prediction_target(source, args.output, args.overwrite, Path(args.run_dir))
    run = load(args.run_dir)
    if args.flag_unknown is not None:
        run.fit_threshold(args.flag_unknown)  # a bad quantile or a missing open_set.json fails before the work
    out = run.predict(_read_inputs(source), flag_unknown=args.flag_unknown)
    if target.suffix == ".npz":
        atomic_savez(target, **out)
    else:
        probs = out["probabilities"]
        flagged = "fits_no_slot" in out
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["slot", "predicted_class", "discovered", "fit_score"] + (["fits_no_slot"] if flagged else [])
                        + [f"p_slot_{k}" for k in range(probs.shape[1])])
        for i in range(len(probs)):
            writer.writerow([int(out["slot"][i]), int(out["predicted_class"][i]), int(out["discovered"][i]),
                             f"{out['fit_score'][i]:.6g}"] + ([int(out["fits_no_slot"][i])] if flagged else [])
                            + [f"{p:.6g}" for p in probs[i]])
        atomic_write_text(target, text.getvalue())
    flagged_text = (f"; {int(out['fits_no_slot'].sum())} fit no slot (below the validation {args.flag_unknown:g}-quantile)"
                    if args.flag_unknown is not None else "")
    print(f"wrote {len(out['slot'])} predictions to {target}{flagged_text}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .run import evaluate

    _print_results(evaluate(args.run_dir, dataset=args.dataset, data_dir=args.data_dir), Path(args.run_dir))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .run import evaluate

    results = evaluate(args.run_dir, dataset=args.dataset, data_dir=args.data_dir)
    if "discovery" not in results:
        raise ValueError(f"{args.run_dir} has no validation labels: nothing to read a slot's class from")
    print((Path(args.run_dir) / "report.md").read_text(), end="")
    print(f"  files: {Path(args.run_dir) / 'report.json'}, report.md, slot_counts.png"
          + (", discovered.png" if (Path(args.run_dir) / "discovered.png").is_file() else ""))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_rows, render_table, write_csv

    rows = compare_rows(args.runs)
    if args.csv is not None and Path(args.csv).exists() and not args.overwrite:
        raise FileExistsError(f"--csv {args.csv} exists: choose another path, or add --overwrite")
    print(render_table(rows), end="")
    if args.csv is not None:
        write_csv(rows, args.csv)
        print(f"wrote {len(rows)} rows to {args.csv}")
    return 0


def _cmd_active(args: argparse.Namespace) -> int:
    from .active import ActiveConfig, OracleStopped, run_active

    config = None
    if not args.resume:
        config = ActiveConfig(
            dataset=args.dataset, data_dir=args.data_dir, model=args.model,
            model_options=_parse_options(args.model_option), rounds=args.rounds, warmup_epochs=args.warmup_epochs,
            epochs_per_round=args.epochs_per_round, n_clusters=args.clusters, sub_clusters=args.sub_clusters,
            max_depth=args.depth, budget_per_round=args.budget, method=args.method, metric=args.metric,
            refine=args.refine,
            confidence=args.confidence, rate=args.rate, oracle=args.oracle, oracle_confidence=args.oracle_confidence,
            max_train=args.max_train, std_threshold=None if args.keep_all_dims else args.std_threshold,
            batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed, device=args.device)
    try:
        run = run_active(config, args.out, resume=args.resume, progress=not args.no_progress)
    except OracleStopped as stop:
        print(f"{stop}: pyro-sus active --resume --out {shlex.quote(args.out)}")
        return 0
    print("round  answers  invalid  coverage  label acc  test acc")
    for r in run.rounds:
        fmt = lambda v: "    n/a" if v is None else f"{v:7.4f}"  # noqa: E731
        print(f"{r['round']:5d}  {r['answers_total']:7d}  {r['invalid_answers']:7d}  {r['coverage']:8.1%}  "
              f"{fmt(r['label_accuracy'])}    {fmt(r['test_accuracy'])}")
    print(f"  per-round records: {run.run_dir / 'rounds.json'}; centres: {run.run_dir}/round_*/centres.png")
    print(f"  the last round's run (evaluate, report, predict read it): {run.run.run_dir}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import METRIC_NAMES, render_markdown, reproduce, write_results_section
    from .sweep import ALREADY_RUNNING
    from .tables import EXPERIMENTS

    if args.list:
        for name, experiment in EXPERIMENTS.items():
            print(f"{name}: {experiment.table} [{experiment.dataset}, {experiment.epochs} epochs, "
                  f"{experiment.seeds} runs]")
            for row in experiment.rows:
                given = {k: v for k, v in row.paper.items() if v is not None}
                numbers = ", ".join(f"{METRIC_NAMES.get(k, k)} {m:g}" + (f" ± {sd:g}" if sd is not None else "")
                                    for k, (m, sd) in given.items())
                reported = ", ".join(METRIC_NAMES.get(k, k) for k in row.paper if k not in given)
                text = (f"paper {numbers}" if numbers else "") + ("; " if numbers and reported else "") + (
                    f"reports {reported} (no paper's number)" if reported else "")
                choices = "; ".join(f"{k} in {', '.join(map(str, v))}" for k, v in row.choose_on_validation.items())
                print(f"    {row.label!r}: {text}" + (f" (chosen on validation: {choices})" if choices else ""))
            if experiment.data_note:
                print(f"    ({experiment.data_note})")
        return 0
    if not args.name:
        raise ValueError("name an experiment (pyro-sus reproduce --list shows them)")

    summary, statuses = reproduce(args.name, args.out, seeds=args.seeds, epochs=args.epochs, rows=args.rows,
                                  device=args.device, jobs=args.jobs, data_dir=args.data_dir, smoke=args.smoke,
                                  threads=args.threads, plugins=args.plugin, jit=args.jit,
                                  precision=args.precision, engine=args.engine, address=args.address,
                                  stack=not args.no_stack, stop_after=args.stop_after)
    print(render_markdown(summary))
    failed = sorted(job for job, code in statuses.items() if code != 0)
    for job in failed:
        what = "NOT STARTED, another process is running it" if statuses[job] == ALREADY_RUNNING else "FAILED"
        print(f"{what}: {job} (log: {json.loads(Path(job).read_text())['log']})", file=sys.stderr)
    if args.write_results:
        write_results_section(summary, args.write_results)
        print(f"wrote the section to {args.write_results}")
    return 1 if failed else 0


def _cmd_models(args: argparse.Namespace) -> int:
    if args.plugin:  # plugins register parts of their own: list the registries as imported
        from .models import MODELS
        from .posteriors import POSTERIORS
        from .priors import LATENT_PRIORS

        listing = [(title, {name: (part.__doc__ or "").strip().splitlines()[0] for name, part in registry.items()})
                   for title, registry in (("models (--model)", MODELS), ("posteriors for z (--posterior)", POSTERIORS),
                                           ("latent priors (--latent-prior)", LATENT_PRIORS))]
    else:  # the built-in ones, read from the source: no torch to load
        from .catalogue import catalogue

        listing = catalogue()
    for title, entries in listing:
        print(title)
        for name, text in sorted(entries.items()):
            print(f"  {name:16s} {text}")
    return 0


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "report": _cmd_report, "predict": _cmd_predict,
            "compare": _cmd_compare, "active": _cmd_active,
            "reproduce": _cmd_reproduce, "models": _cmd_models}


#: Options ``train --resume`` takes; every other one is saved in run.json and cannot change.
RESUME_OPTIONS = {"out", "resume", "stop_after", "no_progress", "dataset", "data_dir", "device", "no_stack",
                  "baseline"}


def _command_named(argv: Sequence[str]) -> set[str]:
    """The command ``argv`` names (its first word that is not an option or --plugin's module), as a set."""
    words = iter(argv)
    for word in words:
        if word == "--plugin":
            next(words, None)
        elif not word.startswith("-"):
            return {word}
    return set()


def _given_train_options(argv: Sequence[str]) -> dict[str, object]:
    """The ``train`` options present on the command line (not defaults), by destination."""
    parser = build_parser(commands={"train"})
    # argparse has no public way to tell an option given from its default (set_defaults(SUPPRESS) makes
    # the namespace hold the marker string, which typed options then fail to convert): the actions' own.
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices["train"]._actions:
        action.default = argparse.SUPPRESS  # absent from the namespace unless given
    given = vars(parser.parse_args(argv))
    return {key: value for key, value in given.items() if key not in ("command", "plugin")}


def _check_resume_options(given: dict[str, object], out: str) -> None:
    """``--resume`` ignores no option silently: one that would change the saved run is an error."""
    ignored = {key: value for key, value in given.items() if key not in RESUME_OPTIONS}
    if not ignored:
        return
    flags = ", ".join(f"--{key.replace('_', '-')}" for key in sorted(ignored))
    saved = Path(out) / "run.json"
    finished = " (a longer schedule is a new run: the cosine learning rate follows the number of epochs)" \
        if "epochs" in ignored else ""
    raise ValueError(f"--resume continues {out} with the options saved in {saved}; {flags} would change them and "
                     f"cannot be given with it{finished}. Start a new run folder (--out) for other options.")


def _interrupted(args: argparse.Namespace) -> str:
    """What to tell a user who pressed Ctrl-C, per command."""
    if args.command == "train":
        if (Path(args.out) / "run.json").is_file() or any(Path(args.out).glob("seed*/run.json")):
            return f"interrupted; continue with `pyro-sus train --resume --out {shlex.quote(args.out)}`"
        return "interrupted before the run folder was written; run the same command again"
    if args.command == "active":
        return (f"interrupted; continue with `pyro-sus active --resume --out {shlex.quote(args.out)}` (saved answers "
                f"are kept)")
    if args.command == "reproduce":
        return "interrupted; run the same command again: finished runs are skipped, interrupted ones resumed"
    return "interrupted"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and return 2, Ctrl-C says how to go on and returns 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # while the modules load, before a command has started
        print("\npyro-sus: interrupted before the command started; nothing was written", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(commands=_command_named(argv)).parse_args(argv)
    # The options given on the command line (not defaults), for train: --resume takes only a few.
    args.given = _given_train_options(argv) if args.command == "train" else {}
    from .allocator import retain_freed_memory
    from .data import DataError
    from .errors import CheckpointError, RunBusyError, RunFileError, TrainingDiverged

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"pyro-sus {args.command}: warning: {message}", file=sys.stderr)

    # This process is ours: let a step's large temporaries be reused instead of faulted in anew.
    retain_freed_memory()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show  # one line a warning, without a source excerpt
            for module in args.plugin:
                importlib.import_module(module)
            if args.command == "train" and args.resume:
                _check_resume_options(args.given, args.out)
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"\npyro-sus {args.command}: {_interrupted(args)}", file=sys.stderr)
        return 130
    except (DataError, CheckpointError, RunFileError, RunBusyError, TrainingDiverged, OSError, ValueError,
            ModuleNotFoundError) as err:
        print(f"pyro-sus {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    """An error as one line: an OSError with a file names it and its reason without the errno prefix."""
    if isinstance(err, OSError) and err.strerror and err.filename and len(err.args) >= 2:
        return f"{err.filename}: {err.strerror}"
    return " ".join(str(err).split("\n"))
