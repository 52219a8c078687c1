"""Active labelling of cluster centres, after Vengalil & Sinha (seed 003): start from no labels,
cluster the latent space, ask an oracle about the centres only, propagate each answer to the
cluster with a confidence, retrain with the confidence-weighted classifier loss, repeat."""

from .clustering import (CLUSTER_METHODS, CONFIDENCE_FUNCTIONS, METRICS, NO_LABEL, Clustering, cluster_latents,
                         confidence, propagate_labels)
from .loop import ORACLES, REFINE, ActiveConfig, ActiveRun, AnswerBook, RoundLabels, label_round, run_active
from .oracles import InteractiveOracle, Oracle, OracleStopped, SimulatedOracle, parse_answer

__all__ = ["CLUSTER_METHODS", "CONFIDENCE_FUNCTIONS", "METRICS", "NO_LABEL", "Clustering", "cluster_latents",
           "confidence", "propagate_labels", "ORACLES", "REFINE", "ActiveConfig", "ActiveRun", "AnswerBook", "RoundLabels",
           "label_round", "run_active", "InteractiveOracle", "Oracle", "OracleStopped", "SimulatedOracle",
           "parse_answer"]
