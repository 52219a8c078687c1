"""A model's negative bound split into named terms, read from the same traces the ELBO uses.

Every site of a model/guide pair contributes its own term to ``-ELBO``: an observed model site its
negative log-likelihood (``reconstruction`` for ``x``, ``nll_<site>`` for any other, e.g. a
labelled y's prior), a latent site ``kl_<site>`` = E_q[log q - log p] (exact for an enumerated y:
KL(q(y|x) || p(y))), a guide factor its own name with its own sign (``classifier_loss``, ``kl_y``)
and a model factor its name with the opposite sign. Sites that depend on an enumerated y are
averaged under q(y|x), as TraceEnum_ELBO does, so at the same random draws the terms sum to the
loss (the contract test checks this for every model).
"""

from __future__ import annotations

import torch
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample

__all__ = ["elbo_terms", "OBSERVED_X_TERM"]

#: The term of the observed data site ``x``.
OBSERVED_X_TERM = "reconstruction"


def _is_factor(site: dict) -> bool:
    return site["is_observed"] and type(site["fn"]).__name__ == "Unit"


def elbo_terms(model, guide, *args, max_plate_nesting: int = 1, per_point: bool = False,
               per_member: bool = False) -> dict[str, torch.Tensor]:
    """Named terms of ``-ELBO`` for one draw of the guide's sampled sites, summed over the batch (or,
    ``per_point``, one value per point of the plate; or, ``per_member``, one value per member of a
    stacked model, whose plate over members is dim -2: ``max_plate_nesting=2``)."""
    guide_trace = poutine.trace(poutine.enum(guide, first_available_dim=-1 - max_plate_nesting)).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    # q of the enumerated values: each site's cost is averaged under it (a cost that does not
    # depend on them sums to itself, as the weights over the enumerated values sum to one).
    weight = torch.ones(())
    for site in guide_trace.nodes.values():
        if site["type"] == "sample" and site["infer"].get("enumerate") == "parallel":
            weight = weight * site["log_prob"].exp()

    terms: dict[str, torch.Tensor] = {}

    def add(name: str, cost: torch.Tensor) -> None:
        weighted = weight.to(cost.device) * cost
        # Enumerated values sit left of the plate: summing them (under q) leaves one cost per point.
        if per_point:
            value = weighted.reshape(-1, weighted.shape[-1]).sum(0)
        elif per_member:  # every dim but the members' (enumerated values, points) summed out
            value = weighted.reshape(-1, *weighted.shape[-2:]).sum((0, 2))
        else:
            value = weighted.sum()
        terms[name] = terms[name] + value if name in terms else value

    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if _is_factor(site):
            add(name, -site["log_prob"])
        elif site["is_observed"]:
            add(OBSERVED_X_TERM if name == "x" else f"nll_{name}", -site["log_prob"])
        else:
            add(f"kl_{name}", -site["log_prob"])
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        add(name if _is_factor(site) else f"kl_{name}", site["log_prob"])
    return terms
