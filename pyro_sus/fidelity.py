"""A paper's settings beside ours, checked: each :class:`pyro_sus.tables.Setting` names the paper's
value, ours, where ours comes from (the paper, the authors' released code, or our choice), and the
run option that holds ours, so that a test can check every row of an experiment runs what its list
says (:func:`setting_mismatches`). An experiment's deviation list is computed from its settings
(:func:`deviations`): a list can no longer say what the code does not do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .tables import Experiment, Row

__all__ = ["row_options", "deviations", "setting_mismatches"]


def row_options(experiment: Experiment, row: Row) -> dict[str, Any]:
    """Every option a row's runs train with, defaults filled in, flattened: ``train.*`` (TrainConfig),
    ``model.*`` (the model's config class), ``split.*``, ``preprocess.*``, ``prior.*``."""
    from .run import run_spec
    from .models import get_model_class

    fit = {key: value for key, value in row.fit.items() if key != "model_options"}
    spec = run_spec(row.model, **fit, model_options=row.fit.get("model_options"),
                    train_options={**experiment.train, **row.train})
    record = spec.to_json()
    flat: dict[str, Any] = {}
    for part in ("split", "preprocess", "prior", "train"):
        flat.update({f"{part}.{key}": value for key, value in record[part].items()})
    config = get_model_class(row.model).config_class
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}
    defaults.update({f.name: f.default_factory() for f in dataclasses.fields(config)
                     if f.default_factory is not dataclasses.MISSING})
    flat.update({f"model.{key}": value for key, value in {**defaults, **spec.model_options}.items()})
    return flat


def setting_mismatches(experiment: Experiment) -> list[str]:
    """Where a row's runs do not run what a setting of the experiment says (empty when every one holds)."""
    labels = {row.label for row in experiment.rows}
    options_of = {row.label: row_options(experiment, row) for row in experiment.rows} if experiment.settings else {}
    found = []
    for setting in experiment.settings:
        unknown = set(setting.rows) - labels
        if unknown:
            found.append(f"{setting.name}: no rows {sorted(unknown)} in {experiment.name}")
        if setting.option is None:
            continue
        for row in experiment.rows:
            if setting.rows and row.label not in setting.rows:
                continue
            options = options_of[row.label]
            if setting.option not in options:
                found.append(f"{setting.name}: {row.label!r} has no option {setting.option}")
            elif _normal(options[setting.option]) != _normal(setting.value):
                found.append(f"{setting.name}: {row.label!r} runs {setting.option}={options[setting.option]!r}, "
                             f"the setting says {setting.value!r}")
    return found


def deviations(experiment: Experiment) -> list[str]:
    """The experiment's deviation list: every setting where ours differs from the paper's, then its notes."""
    return [setting.text() for setting in experiment.settings if setting.deviates] + list(experiment.deviations)


def _normal(value: Any) -> Any:
    """Lists and tuples compare alike (run.json stores tuples as lists)."""
    return [_normal(v) for v in value] if isinstance(value, (list, tuple)) else value
