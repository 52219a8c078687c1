"""What every model in the zoo shares: config dataclasses, the objective, prediction, persistence."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import torch
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule
from pyro.params.param_store import param_with_module_name

from .._fields import check_field_types
from ..distributions import BernoulliLogits
from ..nn import ACTIVATIONS, INITS, broadcast_cat
from ..posteriors import POSTERIORS, PosteriorFamily, build_posterior
from ..priors import LATENT_PRIORS, build_latent_prior
from ..terms import elbo_terms

__all__ = ["Batch", "ModelConfig", "DecoderConfig", "GenerativeConfig", "ZooModel", "GenerativeModel", "LIKELIHOODS",
           "check_class_prior", "without_param_sites", "check_model_size", "planned_state_shapes"]

Likelihood = Literal["bernoulli", "gaussian"]
LIKELIHOODS: tuple[str, ...] = get_args(Likelihood)


@dataclass(frozen=True)
class Batch:
    """What one training step gives a model's loss: a batch of unlabelled points and one of labelled
    points with their slots (either may be None or empty), optional per-label weights, and the factor
    on the labelled batch's terms (``TrainConfig.labelled_scale``).

    For a stacked model (:mod:`pyro_sus.stacking`) the tensors are (E, B, ...), member e's in row e,
    and ``member_weights`` (E, 1) may weigh each member's terms: given as ones that require grad, its
    gradient after ``backward`` is each member's loss."""

    x_unlabelled: torch.Tensor | None = None
    x_labelled: torch.Tensor | None = None
    y_labelled: torch.Tensor | None = None
    w_labelled: torch.Tensor | None = None
    labelled_scale: float = 1.0
    member_weights: torch.Tensor | None = None

    @property
    def has_unlabelled(self) -> bool:
        return self.x_unlabelled is not None and len(self.x_unlabelled) > 0

    @property
    def has_labelled(self) -> bool:
        return self.x_labelled is not None and len(self.x_labelled) > 0


@dataclass
class ModelConfig:
    """Options every model has; saved as JSON beside the weights."""

    x_dim: int
    n_slots: int
    hidden_dims: tuple[int, ...] = (500, 500)
    activation: str = "relu"
    #: How the networks' weights start (:data:`pyro_sus.nn.INITS`): applied by ``build_model`` and to
    #: every run's model (:func:`pyro_sus.nn.initialise`).
    init: str = "default"

    def __post_init__(self) -> None:
        check_field_types(self)  # a wrong type names its option here, not deep in a comparison
        if self.x_dim < 1 or self.n_slots < 1 or any(h < 1 for h in self.hidden_dims):
            raise ValueError(f"x_dim, n_slots and hidden_dims must be positive: {self}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {sorted(INITS)}, got {self.init!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options: {sorted(unknown)}")
        return cls(**data)


@dataclass
class DecoderConfig(ModelConfig):
    """Options of models with a continuous latent z (or feature) of ``z_dim`` and a decoder p(x|...)."""

    z_dim: int = 5
    likelihood: Likelihood = "bernoulli"
    gaussian_scale: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {self.z_dim}")
        if not self.gaussian_scale > 0:
            raise ValueError(f"gaussian_scale must be positive, got {self.gaussian_scale}")


@dataclass
class GenerativeConfig(DecoderConfig):
    """Options of models whose latent z has a swappable posterior q(z|...) and prior p(z|...).

    ``posterior`` / ``latent_prior`` name registered families (:mod:`pyro_sus.posteriors`,
    :mod:`pyro_sus.priors`); their keyword options go in ``posterior_options`` /
    ``latent_prior_options``. ``latent_prior=None`` means the model's own default.
    """

    posterior: str = "normal"
    posterior_options: dict[str, Any] = field(default_factory=dict)
    latent_prior: str | None = None
    latent_prior_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        # Options are stored as their JSON form (tuples become lists) so a saved config compares
        # equal to the one it was written from, and an option JSON cannot hold fails here.
        self.posterior_options = _as_json("posterior_options", self.posterior_options)
        self.latent_prior_options = _as_json("latent_prior_options", self.latent_prior_options)
        if self.posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {self.posterior!r}; known posteriors: {sorted(POSTERIORS)}")
        if self.latent_prior is not None and self.latent_prior not in LATENT_PRIORS:
            raise ValueError(f"unknown latent prior {self.latent_prior!r}; known: {sorted(LATENT_PRIORS)}")


def check_class_prior(class_prior: Sequence[float] | None, n_slots: int) -> tuple[float, ...] | None:
    """``class_prior`` as a tuple of floats, after checking it is ``n_slots`` non-negative numbers summing to 1."""
    if class_prior is None:
        return None
    prior = tuple(float(p) for p in class_prior)
    if len(prior) != n_slots or any(p < 0 for p in prior) or abs(sum(prior) - 1) > 1e-4:
        raise ValueError(f"class_prior must be {n_slots} non-negative numbers summing to 1")
    return prior


#: Bytes a parameter takes in training: the value, its gradient and Adam's two moments, in float32.
TRAINING_BYTES_PER_PARAMETER = 16


def planned_state_shapes(cls: type["ZooModel"], config: ModelConfig) -> dict[str, tuple[int, ...]] | None:
    """The shapes of the state a model of ``cls`` built from ``config`` would hold, found by building it
    on PyTorch's meta device (no memory, no random draws); None for a model whose parts cannot be
    built there (zuko's flows)."""
    try:
        with torch.device("meta"):
            model = cls(config)
    except Exception:  # an op without a meta kernel; the caller falls back to a bound from the sizes
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # not POSIX
        return 64 * 2**30


def check_model_size(cls: type["ZooModel"], config: ModelConfig, where: str) -> dict[str, tuple[int, ...]] | None:
    """Refuse (ValueError naming ``where``) a config whose model would not fit in this machine's memory
    to train, before anything is allocated; returns the planned state shapes where they are known.

    The count is exact where the model can be built on the meta device; otherwise it is bounded by
    the square of the sum of the config's sizes, more than any stack of dense layers between them."""
    shapes = planned_state_shapes(cls, config)
    if shapes is not None:
        n_parameters = sum(math.prod(shape) for shape in shapes.values())
    else:
        sizes = [v for f in dataclasses.fields(config) for v in _integers(getattr(config, f.name))]
        n_parameters = sum(sizes) ** 2
    needed, available = TRAINING_BYTES_PER_PARAMETER * n_parameters, _memory_bytes()
    if needed > available:
        raise ValueError(f"{where}: these sizes (x_dim {config.x_dim}, n_slots {config.n_slots}, hidden_dims "
                         f"{list(config.hidden_dims)}{_z_text(config)}) make a model of about {n_parameters:.3g} "
                         f"parameters, {needed / 2**30:.3g} GiB to train, more than this machine's "
                         f"{available / 2**30:.3g} GiB: check the sizes")
    return shapes


def _integers(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _z_text(config: ModelConfig) -> str:
    return f", z_dim {config.z_dim}" if hasattr(config, "z_dim") else ""


def shape_difference(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> str:
    """One line on how two state tables differ (first differing entry, and how many more), or ''."""
    problems = [f"{k} is missing" for k in expected if k not in found]
    problems += [f"{k} is not part of the model" for k in found if k not in expected]
    problems += [f"{k} has shape {list(found[k])} in the file, {list(expected[k])} in the model"
                 for k in expected if k in found and expected[k] != found[k]]
    if not problems:
        return ""
    return problems[0] + (f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else "")


def _as_json(name: str, options: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(options)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a JSON-serialisable dict of keyword options: {err}") from None


#: Whether ``model`` and ``guide`` record their parameters as Pyro param sites now: on for Pyro's own
#: tools (SVI, Predictive, render_model); off inside the package's own objective, which hands the
#: parameters to a torch optimizer itself and so skips the bookkeeping.
_PARAM_SITES: ContextVar[bool] = ContextVar("param_sites", default=True)
_INSTANCE_NAMES = itertools.count()


@contextlib.contextmanager
def without_param_sites() -> Iterator[None]:
    """Inside, models record no param sites (the package's own losses, which need none)."""
    token = _PARAM_SITES.set(False)
    try:
        yield
    finally:
        _PARAM_SITES.reset(token)


def _recording_param_sites(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (a model's ``model`` or ``guide``), recording the model's parameters as param sites first."""
    @functools.wraps(method)
    def recorded(self: "ZooModel", *args: Any, **kwargs: Any) -> Any:
        self.record_param_sites()
        return method(self, *args, **kwargs)

    recorded._records_param_sites = True  # type: ignore[attr-defined]
    return recorded


class ZooModel(PyroModule):
    """Base of every model: ``model(x, y=None)``, ``guide(x, y=None)``, ``classifier(x)``, ``loss``.

    ``model`` and ``guide`` are a Pyro model/guide pair that Pyro's own tools use as they are:
    ``SVI(m.model, m.guide, pyro.optim.Adam(...), TraceEnum_ELBO(max_plate_nesting=1))`` sees and
    trains every parameter. Each call records the model's parameters as param sites (``pyro.param``,
    what ``pyro.module`` does) under names of this instance's own (``M2_0$$$decoder.0.weight``), so
    several models train side by side in one process without sharing a name; the parameters stay the
    module's own tensors. A subclass's ``model`` and ``guide`` do this without a line of theirs.
    The shared trainer (:mod:`pyro_sus.train`) minimises :meth:`loss`, the per-point mean of the same
    bounds, with a torch optimizer, and records no param sites (it needs none).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("model", "guide"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_records_param_sites", False):
                setattr(cls, name, _recording_param_sites(method))

    def record_param_sites(self) -> None:
        """Record every trainable parameter as a Pyro param site (as ``pyro.module`` does), under this
        instance's names; nothing inside the package's own objective (:func:`without_param_sites`)."""
        if not _PARAM_SITES.get():
            return
        for _ in range(2):
            prefix = self.__dict__.get("_param_site_prefix")
            if prefix is None:
                prefix = f"{type(self).__name__}_{next(_INSTANCE_NAMES)}"
                self.__dict__["_param_site_prefix"] = prefix
            store, clash = pyro.get_param_store(), False
            for name, value in self.named_parameters():
                if not value.requires_grad:
                    continue
                full_name = param_with_module_name(prefix, name)
                # (Compared in the store: handlers such as render_model's hand back stand-ins for the value.)
                if full_name in store and store[full_name] is not value:
                    clash = True  # a copy of another instance (deepcopy) carries its names: take new ones
                    break
                pyro.param(full_name, value)
            if not clash:
                return
            self.__dict__["_param_site_prefix"] = None
        raise RuntimeError(f"cannot give {type(self).__name__}'s parameters names of their own in Pyro's param store")

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    registry_name: ClassVar[str]
    #: Whether unlabelled batches enter the objective (False for a labelled-data-only baseline).
    uses_unlabelled: ClassVar[bool] = True
    #: Whether the unlabelled objective enumerates a discrete site (False: no warning that none is).
    enumerates_unlabelled: ClassVar[bool] = True
    #: Whether ``loss`` accepts per-label weights (``w_labelled``), e.g. propagated-label confidences.
    takes_label_weights: ClassVar[bool] = False
    #: Whether the config has a ``class_prior`` (p(y) over the slots) that a run sets from its prior spec.
    has_class_prior: ClassVar[bool] = False
    #: Whether :meth:`loss` is exactly the per-point mean of ``model``/``guide``'s bounds, so that Pyro's
    #: SVI on the pair optimises the same objective (False: terms outside the pair, such as the
    #: categorical VAE's assignment and feature losses; SVI then trains the bound alone).
    loss_is_the_bounds: ClassVar[bool] = True
    #: Seed of the draws a stochastic classifier makes in :meth:`predict_proba` (repeatable output).
    prediction_seed: ClassVar[int] = 0
    #: Whether :meth:`loss` may be traced (:mod:`pyro_sus.tracing`): no Python branch on tensor values
    #: and no Python state that changes in training. False unless a model says so; the contract
    #: test checks every model that does against its eager loss.
    traceable: ClassVar[bool] = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # A single plate "data"; enumerated discrete sites go to its left. Labelled batches often
        # have nothing to enumerate, which is expected, so their instance does not warn about it.
        self._elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=self.enumerates_unlabelled)
        self._elbo_labelled = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)

    #: Whether the model is trained by the gradient loop (:mod:`pyro_sus.train`); False for a baseline fitted
    #: once in closed form by its ``fit_data(x_labelled, y_labelled, x_unlabelled, seed)`` (k-means).
    trained_by_gradient: ClassVar[bool] = True

    #: Config fields of the smallest instance the contract checks (:func:`pyro_sus.testing.tiny_model`)
    #: should build, where the shared tiny sizes do not make a sound model.
    tiny_options: ClassVar[dict[str, Any]] = {}

    #: Whether runs of this model may train stacked (:mod:`pyro_sus.stacking`): its ``model`` and ``guide``
    #: take their plates from :meth:`data_plate` and read a batch's size with :meth:`batch_points`.
    stackable: ClassVar[bool] = False

    def stacking_refusal(self) -> str | None:
        """Why runs of this model cannot train stacked (None: they can, as far as the model knows)."""
        if not self.stackable:
            return f"{type(self).__name__}'s model and guide take no plate over members (stackable = False)"
        return None

    #: The number of members of a stacked model (:func:`pyro_sus.stacking.stack_models`), None for one model.
    members: int | None = None

    def data_plate(self, size: int) -> contextlib.AbstractContextManager:
        """The plate over a batch's ``size`` points (dim -1), inside one over the members (dim -2) when
        the model is stacked: each member's points are its own batch."""
        if self.members is None:
            return pyro.plate("data", size)
        plates = contextlib.ExitStack()
        plates.enter_context(pyro.plate("members", self.members, dim=-2))
        plates.enter_context(pyro.plate("data", size, dim=-1))
        return plates

    def batch_points(self, x: torch.Tensor) -> int:
        """How many points ``x`` holds per member: its rows, or its second dim when stacked (E, B, D)."""
        return len(x) if self.members is None else x.shape[-2]

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (or log-probabilities) of the model's q(y|x) over the ``n_slots`` slots."""
        raise NotImplementedError

    def before_step(self, step: int) -> None:
        """Called by the trainer before training step ``step`` (0-based over the whole run, so a
        resumed run sees the same numbers); a model with a schedule (a temperature) sets it here."""

    def latent_prior_sd(self) -> torch.Tensor | None:
        """Per slot, the standard deviation of a learned p(z | y = slot) over z's dimensions (root mean
        variance); None when p(z|y) is fixed, has no closed-form variance, or the model has none."""
        return None

    #: Whether the model has ``embed(x)`` (a point's latent code) and ``decode(z)`` (inputs from codes),
    #: as the active-labelling loop needs.
    has_embedding: ClassVar[bool] = False

    def latent_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Each point's latent representation: the code of a model with an embedding; a model with a
        guide over z overrides it with E[z | x]. A ValueError for a model with neither."""
        if self.has_embedding:
            return self.embed(x)
        raise ValueError(f"model {type(self).__name__} gives no latent representation (it has neither an "
                         f"embedding nor latent_mean)")

    @property
    def likelihood_family(self) -> str | None:
        """The family of p(x|...) ("bernoulli", "gaussian"), or None for a model without one."""
        return None

    @property
    def device(self) -> torch.device:
        """Where the model's tensors are (its first parameter's, or first buffer's, device)."""
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def _device(self) -> torch.device:
        return self.device

    def loss(self, batch: Batch) -> torch.Tensor:
        """Per-point negative bound of each batch, summed: -U(x) and -w * L(x, y) (+ classifier terms).

        One call covers labelled, unlabelled and classifier terms, so one optimizer step does too.
        ``batch.w_labelled`` weights each label, for models that take weights (``takes_label_weights``);
        ``batch.labelled_scale`` multiplies the labelled batch's terms.
        """
        return self._objective(False, batch)["loss"]

    @torch.no_grad()
    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """:meth:`loss` split into named terms (``reconstruction``, ``kl_z``, ``kl_y``, ``classifier_loss``,
        ...: :mod:`pyro_sus.terms`), weighted as in the loss: at the same random draws they sum to it.
        For logging; no gradients."""
        return self._objective(True, batch)

    def bound_parts(self, batch: Batch) -> list[tuple[float, int, TraceEnum_ELBO, tuple]]:
        """The bounds the loss sums, each as ``scale * -bound / n``: (scale, n, ELBO, arguments of
        model and guide) for each batch."""
        if batch.w_labelled is not None and not self.takes_label_weights:
            raise ValueError(f"model {type(self).__name__} does not take per-label weights")
        parts: list[tuple[float, int, TraceEnum_ELBO, tuple]] = []
        if self.uses_unlabelled and batch.has_unlabelled:
            parts.append((1.0, self.batch_points(batch.x_unlabelled), self._elbo, (batch.x_unlabelled,)))
        if batch.has_labelled:
            extra = (batch.w_labelled,) if batch.w_labelled is not None else ()
            parts.append((batch.labelled_scale, self.batch_points(batch.x_labelled), self._elbo_labelled,
                          (batch.x_labelled, batch.y_labelled, *extra)))
        return parts

    def _objective(self, named: bool, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"loss": total}`` (differentiable), or the named terms (``named``)."""
        if self.members is None:
            return self._bound_terms(named, self.bound_parts(batch))
        if named:  # each member's terms: values of shape (E,)
            terms: dict[str, torch.Tensor] = {}
            with without_param_sites():
                for scale, n, _, args in self.bound_parts(batch):
                    for name, value in elbo_terms(self.model, self.guide, *args, max_plate_nesting=2,
                                                  per_member=True).items():
                        terms[name] = terms.get(name, 0.0) + scale * value / n
            return terms
        weights = batch.member_weights
        if weights is None:
            weights = torch.ones(self.members, 1, device=self._device())
        with poutine.scale(scale=weights):  # the members' plate is dim -2: one weight per member
            return self._bound_terms(named, self.bound_parts(batch))

    def _bound_terms(self, named: bool, parts: list[tuple[float, int, TraceEnum_ELBO, tuple]]
                     ) -> dict[str, torch.Tensor]:
        with without_param_sites():
            return self._summed_bounds(named, parts)

    def _summed_bounds(self, named: bool, parts: list[tuple[float, int, TraceEnum_ELBO, tuple]]
                       ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {"loss": torch.zeros((), device=self._device())} if not named else {}
        for scale, n, elbo, args in parts:
            if named:
                for name, value in elbo_terms(self.model, self.guide, *args).items():
                    terms[name] = terms.get(name, 0.0) + scale * value / n
            else:
                terms["loss"] = terms["loss"] + scale * elbo.differentiable_loss(self.model, self.guide, *args) / n
        return terms

    @torch.no_grad()
    def unlabelled_bound(self, x: torch.Tensor, n_samples: int = 4, batch_size: int = 1024) -> float | None:
        """Mean per point of the bound the model maximises on unlabelled data (nats; higher is
        better), averaged over ``n_samples`` draws; None for a model with no unlabelled objective."""
        if not self.uses_unlabelled or not len(x):
            return None
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), without_param_sites():
            torch.manual_seed(self.prediction_seed)
            total = sum(float(self._elbo.loss(self.model, self.guide, chunk))
                        for _ in range(n_samples) for chunk in x.split(batch_size))
        return -total / (n_samples * len(x))

    #: What :meth:`fit_scores` measures: "bound" (nats per point), "max_probability" (the largest q(y|x))
    #: or "negative_distance" (minus the squared distance to the nearest centre: the k-means baseline).
    fit_score_kind: ClassVar[str] = "bound"

    @torch.no_grad()
    def fit_scores(self, x: torch.Tensor, n_samples: int = 4, batch_size: int = 1024) -> torch.Tensor:
        """How well each row of ``x`` fits the model, higher fitting better: the per-point bound on
        unlabelled data (nats, averaged over ``n_samples`` draws), or the largest q(y|x) for a model
        without one (``fit_score_kind``). Points that fit no slot score low."""
        if self.fit_score_kind == "max_probability" or not self.uses_unlabelled:
            return self.predict_proba(x).max(-1).values
        devices = [x.device] if x.device.type == "cuda" else []
        scores = []
        with torch.random.fork_rng(devices=devices), without_param_sites():
            torch.manual_seed(self.prediction_seed)
            for chunk in x.split(batch_size):
                total = torch.zeros(len(chunk), device=x.device)
                for _ in range(n_samples):
                    for _, _, _, args in self.bound_parts(Batch(chunk)):
                        total = total - sum(elbo_terms(self.model, self.guide, *args, per_point=True).values())
                scores.append(total / n_samples)
        return torch.cat(scores)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """q(y|x) for every row of ``x``, in batches, without gradients; repeatable for every model."""
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # leaves the caller's random streams untouched
            torch.manual_seed(self.prediction_seed)
            return torch.cat([torch.softmax(self.classifier(chunk), dim=-1) for chunk in x.split(batch_size)])

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, name: str = "model") -> None:
        """Write ``{name}.json`` (config) and ``{name}.pt`` (weights) into ``directory``."""
        from ..io import atomic_torch_save, atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / f"{name}.json", json.dumps(self.config.to_json(), indent=2))
        atomic_torch_save(self.state_dict(), directory / f"{name}.pt")

    @classmethod
    def load(cls, directory: str | Path, name: str = "model", map_location: str = "cpu") -> "ZooModel":
        """Rebuild a model written by :meth:`save` (config JSON + weights).

        The config's sizes are checked against the saved weights' shapes before the model is built,
        so an edited config (``hidden_dims: [100000000]``) fails in one line instead of allocating."""
        from ..io import CheckpointError, RunFileError, load_checkpoint, read_json

        directory = Path(directory)
        config_path, weights_path = directory / f"{name}.json", directory / f"{name}.pt"
        if not config_path.is_file():
            raise CheckpointError(f"{config_path} does not exist")
        saved = read_json(config_path, f"config of {cls.__name__}, written beside its weights")
        try:
            config = cls.config_class.from_json(saved if isinstance(saved, dict) else {"": saved})
        except (TypeError, ValueError) as err:
            raise RunFileError(f"{config_path}: {err}; restore the file or train again") from None
        state = load_checkpoint(weights_path, map_location)  # refusals pass through as they are
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{weights_path} is not a pyro_sus model file (no table of weights); restore it "
                                  f"or train again")
        saved_shapes = {k: tuple(v.shape) for k, v in state.items()}
        planned = planned_state_shapes(cls, config)
        if planned is None:  # a part the meta device cannot build: bound the sizes instead
            try:
                check_model_size(cls, config, str(config_path))
            except ValueError as err:
                raise RunFileError(str(err)) from None
        elif planned != saved_shapes:
            raise CheckpointError(f"{weights_path} does not match {config_path}: "
                                  f"{shape_difference(planned, saved_shapes)}; restore both files from the same run, "
                                  f"or train again")
        model = cls(config)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            first = str(err).strip().splitlines()
            detail = shape_difference({k: tuple(v.shape) for k, v in model.state_dict().items()}, saved_shapes)
            raise CheckpointError(f"{weights_path} does not match {config_path}: "
                                  f"{detail or (first[-1].strip() if first else type(err).__name__)}; restore both "
                                  f"files from the same run, or train again") from None
        return model


class GenerativeModel(ZooModel):
    """A zoo model with a decoder p(x|...) and a continuous latent z with swappable parts."""

    config_class: ClassVar[type[DecoderConfig]] = GenerativeConfig
    #: Whether the posterior family and latent prior can be swapped (the config is a GenerativeConfig;
    #: False: z is not a latent with a prior, and the config a DecoderConfig).
    swappable_parts: ClassVar[bool] = True
    #: The latent prior used when the config names none.
    default_latent_prior: ClassVar[str] = "standard_normal"
    tiny_options: ClassVar[dict[str, Any]] = {"z_dim": 3}

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__(config)
        if config.likelihood == "gaussian":
            self.register_buffer("obs_scale", torch.tensor(float(config.gaussian_scale)))

    @property
    def likelihood_family(self) -> str:
        return self.config.likelihood

    def build_posterior(self, context_dim: int) -> PosteriorFamily:
        """q(z | context) from the configured family."""
        c = self.config
        return build_posterior(c.posterior, context_dim, c.z_dim, c.hidden_dims,
                               {"activation": c.activation, **c.posterior_options})

    def posterior_context(self, *parts: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The context of q(z|...) from its parts: the parts themselves for a family that takes them
        (no copy of x per enumerated y), else their broadcast concatenation."""
        return parts if self.posterior.takes_context_parts else broadcast_cat(*parts)

    def build_latent_prior(self, n_slots: int) -> torch.nn.Module:
        """p(z | y) over ``n_slots`` values of y from the configured (or default) family."""
        c = self.config
        return build_latent_prior(c.latent_prior or self.default_latent_prior, n_slots, c.z_dim,
                                  c.latent_prior_options)

    def unconditional_latent_prior(self, x: torch.Tensor) -> dist.Distribution:
        """p(z) for each row of ``x``, for models with no class variable above z (prior built over one slot)."""
        return self.latent_prior(torch.zeros(x.shape[:1], dtype=torch.long, device=x.device))

    def observation(self, decoder_out: torch.Tensor) -> dist.Distribution:
        """p(x | ...) from the decoder output: Bernoulli logits, or Gaussian means with a fixed scale."""
        if self.config.likelihood == "bernoulli":
            # Grey levels are allowed as soft targets (no binarisation at evaluation), hence no
            # support check on the observed values.
            return BernoulliLogits(logits=decoder_out, validate_args=False).to_event(1)
        return dist.Normal(decoder_out, self.obs_scale).to_event(1)
