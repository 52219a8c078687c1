"""The shared trainer: exact resume, divergence handling, checkpoints."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from pyro_sus.io import CheckpointError, load_checkpoint
from pyro_sus.models import build_model
from pyro_sus.spec import TrainConfig
from pyro_sus.train import TrainingData, TrainingDiverged, train
from pyro_sus.models.base import Batch
from conftest import DEVICES


def toy_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(60, 10, generator=g)
    return TrainingData(x_labelled=x[:12], y_labelled=torch.arange(12) % 3, x_unlabelled=x[12:50],
                        x_val=x[50:], y_val=np.arange(10) % 4)


def toy_model(name="gmdgm", seed=0, **options):
    torch.manual_seed(seed)
    return build_model(name, x_dim=10, n_slots=4, z_dim=2, hidden_dims=(8,), **options)


def config(**overrides):
    options = dict(epochs=4, batch_size=16, learning_rate=1e-2, seed=3, device="cpu")
    options.update(overrides)
    return TrainConfig(**options)


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    straight = toy_model()
    train(straight, toy_data(), config(), tmp_path / "straight", progress=False)

    run_dir = tmp_path / "stopped"
    train(toy_model(), toy_data(), config(), run_dir, progress=False, stop_after=2)
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2
    resumed = toy_model(seed=99)  # other weights: everything must come from the checkpoint
    history = train(resumed, toy_data(), config(), run_dir, resume=True, progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_jit_training_follows_the_eager_run_and_resumes_exactly(tmp_path):
    eager, traced = toy_model(), toy_model()
    train(eager, toy_data(), config(), progress=False)
    train(traced, toy_data(), config(jit=True), tmp_path / "straight", progress=False)
    # The trace replays the same operations and random draws: only float rounding may differ.
    for (name, a), b in zip(eager.state_dict().items(), traced.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"{name}: jit training took another path")
    run_dir = tmp_path / "stopped"
    train(toy_model(), toy_data(), config(jit=True), run_dir, progress=False, stop_after=2)
    resumed = toy_model(seed=99)
    train(resumed, toy_data(), config(jit=True), run_dir, resume=True, progress=False)
    for (name, a), b in zip(traced.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"


@pytest.mark.parametrize("jit", [False, True])
def test_an_annealed_relaxed_run_resumes_exactly_and_sees_every_step_once(tmp_path, jit):
    """The trainer sets the temperature from the global step count before each step: a resumed
    run anneals as the uninterrupted one (same parameters), with or without a traced loss."""
    options = dict(y_estimator="gumbel-straight-through", temperature=1.0, temperature_min=0.3,
                   temperature_decay=0.05)
    straight = toy_model(**options)
    seen = []
    record = straight.before_step
    straight.before_step = lambda step: (seen.append(step), record(step))
    train(straight, toy_data(), config(jit=jit), progress=False)
    steps_per_epoch = 3  # ceil(38 unlabelled / 16)
    assert seen == list(range(4 * steps_per_epoch))
    assert float(straight.temperature) == pytest.approx(max(0.3, math.exp(-0.05 * 11)))
    run_dir = tmp_path / "stopped"
    train(toy_model(**options), toy_data(), config(jit=jit), run_dir, progress=False, stop_after=2)
    resumed = toy_model(seed=99, **options)
    train(resumed, toy_data(), config(jit=jit), run_dir, resume=True, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"


def test_jit_refuses_validation_and_a_model_that_is_not_traceable():
    with pytest.raises(ValueError, match="jit and validate"):
        TrainConfig(jit=True, validate=True)
    traceable = toy_model()

    class Untraced(type(traceable)):
        traceable = False

    with pytest.raises(ValueError, match="traceable = False"):
        train(Untraced(traceable.config), toy_data(), config(jit=True), progress=False)


class Crash(Exception):
    pass


def crash_at_step(model, step):
    """Make ``model.loss`` raise on its ``step``-th call, as a killed process would stop."""
    calls = {"n": 0}
    original = model.loss

    def loss(*args):
        calls["n"] += 1
        if calls["n"] == step:
            raise Crash
        return original(*args)

    model.loss = loss
    return model


def test_crash_between_checkpoints_resumes_from_the_last_one(tmp_path):
    steps_per_epoch = 3  # 38 unlabelled points in batches of 16
    model = crash_at_step(toy_model(), 2 * steps_per_epoch + 2)  # dies inside epoch 3
    with pytest.raises(Crash):
        train(model, toy_data(), config(epochs=5, checkpoint_every=2), tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    assert not list(tmp_path.glob(".*.tmp")), "a temporary checkpoint file was left behind"
    history = train(toy_model(), toy_data(), config(epochs=5, checkpoint_every=2), tmp_path, resume=True,
                    progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 5


def test_nan_loss_raises_and_saves_last_good_parameters(tmp_path):
    model = toy_model()
    data = toy_data()
    data.x_unlabelled[3, 0] = float("nan")  # slips past loaders' checks: the trainer must still stop cleanly
    with pytest.raises(TrainingDiverged, match="last_good.pt"):
        train(model, data, config(binarize=False), tmp_path, progress=False)
    saved = load_checkpoint(tmp_path / "last_good.pt")["model"]
    assert all(torch.isfinite(t).all() for t in saved.values())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("check_every", [1, 4, None])
def test_last_good_holds_the_state_before_the_first_non_finite_step_however_rarely_checked(
        tmp_path, check_every, device):
    """With the finite check deferred (every 4 steps, or the default: every step on CPU, every 50
    on CUDA, so at the epoch's end here) the error names the same step and ``last_good.pt`` holds
    exactly the state before it, although later steps ran on NaN parameters."""
    model = toy_model()
    before = {}
    original = model.before_step

    def remember(step):  # the trainer calls this before each step's loss
        before[step] = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
        original(step)

    model.before_step = remember
    data = toy_data()
    data.x_unlabelled[3, 0] = float("nan")
    with pytest.raises(TrainingDiverged) as caught:
        train(model, data, config(binarize=False, finite_check_every=check_every, device=device), tmp_path,
              progress=False)
    error = caught.value
    steps_per_epoch = 3
    bad = (error.epoch - 1) * steps_per_epoch + error.step - 1
    reference = tmp_path / "reference"
    # The per-step check on the same device: the step and state by definition. (The device matters: a
    # CUDA generator draws another data order than a CPU one, so the NaN row falls in another step.)
    with pytest.raises(TrainingDiverged) as exact:
        train(toy_model(), data, config(binarize=False, finite_check_every=1, device=device), reference,
              progress=False)
    assert (error.epoch, error.step) == (exact.value.epoch, exact.value.step)
    saved = load_checkpoint(tmp_path / "last_good.pt")["model"]
    assert saved.keys() == before[bad].keys()
    for key, value in saved.items():
        assert torch.equal(value.cpu(), before[bad][key]), f"{key} is not the state before the bad step"
    deferred = check_every == 4 or (check_every is None and device == "cuda")
    assert (max(before) > bad) == deferred  # a deferred check lets the run go on past the bad step


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    train(toy_model(), toy_data(), config(epochs=1), tmp_path, progress=False)
    raw = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CheckpointError, match="corrupt"):
        train(toy_model(), toy_data(), config(epochs=2), tmp_path, resume=True, progress=False)


def test_training_reduces_the_loss_and_learns_the_labelled_classes():
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(3, 10, generator=g).round()
    y = torch.arange(300) % 3
    x = (0.8 * centres[y] + 0.1).clamp(0, 1)
    data = TrainingData(x[:30], y[:30], x[30:], x[:0], np.zeros(0, int))
    model = build_model("m2", x_dim=10, n_slots=3, z_dim=2, hidden_dims=(16,), alpha=5.0)
    history = train(model, data, config(epochs=15, learning_rate=3e-3), progress=False)
    assert history[-1]["loss"] < history[0]["loss"]
    predicted = model.predict_proba(x[30:]).argmax(-1)
    assert (predicted == y[30:]).float().mean() > 0.9  # chance is 1/3


def test_bad_train_config():
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="adam_beta1"):
            TrainConfig(adam_beta1=bad)


def test_adam_beta1_reaches_the_optimizer(tmp_path):
    train(toy_model(), toy_data(), config(epochs=1, adam_beta1=0.95), tmp_path, progress=False)
    groups = load_checkpoint(tmp_path / "last.pt", map_location="cpu")["optimizer"]["param_groups"]
    assert [tuple(g["betas"]) for g in groups] == [(0.95, 0.999)]


@pytest.mark.parametrize("device", DEVICES)
def test_trains_on_every_available_device(device, tmp_path):
    model = toy_model()
    history = train(model, toy_data(), config(epochs=2, device=device), tmp_path, progress=False)
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])
    assert next(model.parameters()).device.type == device
    assert load_checkpoint(tmp_path / "last.pt", map_location="cpu")["epoch"] == 2


def test_cuda_request_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device"):
        train(toy_model(), toy_data(), config(device="cuda"), progress=False)


def test_label_weights_reach_a_model_that_takes_them(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(40, 6)
    y = torch.arange(40) % 3
    data = TrainingData(x[:20], y[:20], x[20:], x[:0], np.zeros(0, int), w_labelled=torch.linspace(0, 1, 20))
    model = build_model("betavae", x_dim=6, n_slots=3, z_dim=2, hidden_dims=(8,))
    history = train(model, data, TrainConfig(epochs=2, batch_size=10, device="cpu"), tmp_path, progress=False)
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    with pytest.raises(ValueError, match="one weight in"):
        TrainingData(x[:20], y[:20], x[20:], x[:0], np.zeros(0, int), w_labelled=torch.full((20,), 2.0))
    m2 = build_model("m2", x_dim=6, n_slots=3, z_dim=2, hidden_dims=(8,))
    with pytest.raises(ValueError, match="per-label weights"):
        train(m2, data, TrainConfig(epochs=1, batch_size=10, device="cpu"), None, progress=False)


def test_labelled_scale_weighs_the_labelled_batch_and_reaches_the_loss(monkeypatch):
    for bad in ("sets", 0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="labelled_scale"):
            TrainConfig(labelled_scale=bad)
    assert TrainConfig(labelled_scale="dataset").labelled_factor(12, 38) == pytest.approx(12 / 38)
    assert TrainConfig(labelled_scale=0.5).labelled_factor(12, 38) == 0.5
    assert TrainConfig().labelled_factor(12, 38) == TrainConfig(labelled_scale="dataset").labelled_factor(12, 0) == 1

    model, data = toy_model("m2"), toy_data()
    x_l, y_l = data.x_labelled, data.y_labelled
    torch.manual_seed(5)
    full = model.loss(Batch(None, x_l, y_l))
    torch.manual_seed(5)
    torch.testing.assert_close(model.loss(Batch(None, x_l, y_l, labelled_scale=0.25)), 0.25 * full)

    seen = []
    loss = model.loss
    monkeypatch.setattr(model, "loss", lambda batch: seen.append(batch.labelled_scale) or loss(batch))
    train(model, data, config(epochs=1, labelled_scale="dataset"), progress=False)
    train(model, data, config(epochs=1), progress=False)
    steps = -(-len(data.x_unlabelled) // 16)
    assert seen == [pytest.approx(12 / 38)] * steps + [1.0] * steps  # the trainer gives the loss one Batch


def test_epoch_records_split_validation_accuracy_into_known_and_novel_and_count_extra_slots():
    """Slots 0-1 are classes 0 and 5; slots 2-4 are extra. Paper-protocol mapping on validation:
    slot 0 -> 0, slot 1 -> 5 (majority), slot 2 -> 7, slot 3 -> 8, slot 4 unused."""
    from types import SimpleNamespace
    from pyro_sus.callbacks import validation_metrics

    slots = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 0])
    labels = np.array([0, 0, 5, 5, 7, 7, 7, 8, 8])

    class Fixed(torch.nn.Module):
        config = SimpleNamespace(n_slots=5)

        def predict_proba(self, x):
            return torch.nn.functional.one_hot(slots, 5).float()

    data = TrainingData(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), torch.zeros(9, 2),
                        labels, known_classes=(0, 5))
    record = validation_metrics(Fixed(), data)
    # correct: 0,0 | 5,5 | (7 in slot 1: wrong) | 7,7 | 8 | (8 in slot 0: wrong) -> 7 of 9
    assert record["val_cluster_accuracy"] == pytest.approx(7 / 9)
    assert record["val_known_accuracy"] == pytest.approx(4 / 4)   # classes 0 and 5
    assert record["val_novel_accuracy"] == pytest.approx(3 / 5)   # classes 7 and 8
    assert record["val_slots_used"] == 4 and record["val_extra_slots_used"] == 2
    without = validation_metrics(Fixed(), dataclasses.replace(data, known_classes=None))
    assert set(without) == {"val_cluster_accuracy", "val_slots_used"}


@pytest.mark.parametrize("latent_prior", ["class_gaussian", "mixture"])
def test_epoch_records_the_spread_of_a_learned_latent_prior_over_known_and_extra_slots(latent_prior):
    """Slots 0-1 are known (classes 0 and 1), slots 2-3 extra. The record's sd of p(z|y) per group
    is the root mean variance of each slot's Gaussian (or mixture), averaged over the group's slots."""
    model = toy_model(latent_prior=latent_prior)
    data = dataclasses.replace(toy_data(), y_labelled=torch.arange(12) % 2, known_classes=(0, 1))
    history = train(model, data, config(epochs=1), progress=False)
    with torch.no_grad():  # slot 0's sd times e: only the known slots' mean sd moves
        model.latent_prior.log_scale[0] += 1.0
    prior = model.latent_prior
    if latent_prior == "class_gaussian":
        variance = (2 * prior.log_scale).exp()
    else:  # a mixture's variance: E[var] + var[E] over its components
        w = prior.logits.softmax(-1)[..., None]
        mean = (w * prior.loc).sum(1)
        variance = (w * ((2 * prior.log_scale).exp() + prior.loc ** 2)).sum(1) - mean ** 2
    sd = variance.mean(-1).sqrt().detach()
    from pyro_sus.callbacks import latent_prior_spread
    record = latent_prior_spread(model, data)
    assert record["prior_z_sd_known"] == pytest.approx(float(sd[:2].mean()), rel=1e-5)
    assert record["prior_z_sd_extra"] == pytest.approx(float(sd[2:].mean()), rel=1e-5)
    assert record["prior_z_sd_known"] > history[0]["prior_z_sd_known"]
    assert record["prior_z_sd_extra"] == pytest.approx(history[0]["prior_z_sd_extra"])
    # M2's N(0, I) is not learned, and without known classes there is no split to report.
    m2_history = train(toy_model("m2"), data, config(epochs=1), progress=False)
    assert not any(key.startswith("prior_z_sd") for key in m2_history[0])
    assert latent_prior_spread(model, dataclasses.replace(data, known_classes=None)) == {}


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_networks_keep_the_loss_in_float32_close_to_fp32_and_resume_exactly(tmp_path, device):
    """precision="bf16": the networks compute in bfloat16 and hand back float32, so every
    log-probability and the loss stay float32; one step's loss is within 1% of the fp32 loss from
    the same weights and draws; and a stopped bf16 run resumes to the uninterrupted one's weights."""
    import pyro.poutine as poutine
    from pyro_sus.nn import network_precision

    model = toy_model().to(device)
    data = toy_data().to(torch.device(device))
    x_u, x_l, y_l = data.x_unlabelled[:16], data.x_labelled[:8], data.y_labelled[:8]
    torch.manual_seed(0)
    full = model.loss(Batch(x_u, x_l, y_l))
    torch.manual_seed(0)
    with network_precision(torch.bfloat16):
        low = model.loss(Batch(x_u, x_l, y_l))
        trace = poutine.trace(poutine.enum(model.guide, first_available_dim=-2)).get_trace(x_u)
        trace.compute_log_prob()
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert all(site["log_prob"].dtype == torch.float32 for site in trace.nodes.values() if site["type"] == "sample")
    difference = abs(float(low.detach() - full.detach()))
    assert 0 < difference < 0.01 * abs(float(full.detach()))  # bf16 did run, and stayed close

    straight = toy_model()
    train(straight, toy_data(), config(precision="bf16", device=device), progress=False)
    run_dir = tmp_path / "stopped"
    train(toy_model(), toy_data(), config(precision="bf16", device=device), run_dir, progress=False, stop_after=2)
    resumed = toy_model(seed=99)
    train(resumed, toy_data(), config(precision="bf16", device=device), run_dir, resume=True, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    fp32 = toy_model()
    train(fp32, toy_data(), config(device=device), progress=False)
    assert not torch.equal(fp32.decoder[0].weight, straight.decoder[0].weight)  # the option reached the networks


def test_precision_options_are_checked():
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="jit with a precision"):
        TrainConfig(precision="bf16", jit=True)


def scripted_validation(monkeypatch, scores):
    """Make each epoch's validation accuracy the next of ``scores`` (the model's own is beside the point here)."""
    import pyro_sus.callbacks as callbacks

    left = list(scores)
    monkeypatch.setattr(callbacks, "validation_metrics", lambda model, data: {"val_accuracy": left.pop(0)})


def test_best_validation_hands_back_the_best_epochs_model_and_patience_stops(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.9, 0.7, 0.6, 0.8])
    best = toy_model()
    history = train(best, toy_data(), config(epochs=5, select="best-validation"), tmp_path / "best", progress=False)
    assert [r["selected_epoch"] for r in history] == [1, 2, 2, 2, 2]
    scripted_validation(monkeypatch, [0.0, 0.0])
    reference = toy_model()  # the same run, stopped after epoch 2: the weights best-validation must hand back
    train(reference, toy_data(), config(epochs=5), tmp_path / "reference", progress=False, stop_after=2)
    for (name, a), b in zip(reference.state_dict().items(), best.state_dict().values()):
        assert torch.equal(a, b), f"{name} is not epoch 2's"

    scripted_validation(monkeypatch, [0.5, 0.9, 0.7, 0.6, 0.8])
    patient = toy_model()
    history = train(patient, toy_data(), config(epochs=5, select="best-validation", patience=2), tmp_path / "p",
                    progress=False)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and history[-1]["stopped_early"]
    assert load_checkpoint(tmp_path / "p" / "last.pt")["epoch"] == 4
    for a, b in zip(reference.state_dict().values(), patient.state_dict().values()):
        assert torch.equal(a, b)
    # Resumed after patience ended it: nothing more is trained.
    scripted_validation(monkeypatch, [])
    again = train(toy_model(seed=5), toy_data(), config(epochs=5, select="best-validation", patience=2), tmp_path / "p",
                  resume=True, progress=False)
    assert len(again) == 4


def test_best_validation_resumes_exactly(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.9, 0.7, 0.95, 0.8])
    straight = toy_model()
    train(straight, toy_data(), config(epochs=5, select="best-validation"), tmp_path / "straight", progress=False)
    scripted_validation(monkeypatch, [0.5, 0.9, 0.7, 0.95, 0.8])
    train(toy_model(), toy_data(), config(epochs=5, select="best-validation"), tmp_path / "stopped", progress=False,
          stop_after=3)
    resumed = toy_model(seed=99)
    history = train(resumed, toy_data(), config(epochs=5, select="best-validation"), tmp_path / "stopped",
                    resume=True, progress=False)
    assert history[-1]["selected_epoch"] == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"


def test_selection_options_are_checked():
    with pytest.raises(ValueError, match="select must be one of"):
        TrainConfig(select="best-test")
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=3)
    data = dataclasses.replace(toy_data(), x_val=torch.zeros(0, 10), y_val=np.zeros(0, int))
    with pytest.raises(ValueError, match="needs a validation split"):
        train(toy_model(), data, config(select="best-validation"), progress=False)


def test_epoch_records_carry_the_named_loss_terms_on_a_fixed_sample():
    """Each epoch's record splits the loss by term on one fixed sample of the training data, measured
    from a fixed seed: measuring again after training gives the last record's numbers."""
    from pyro_sus.callbacks import monitor_batch, monitored_loss_terms

    model, data = toy_model(), toy_data()
    history = train(model, data, config(epochs=2), progress=False)
    names = {"loss_reconstruction", "loss_kl_z", "loss_kl_y", "loss_nll_y", "loss_classifier_loss"}
    for record in history:
        assert names <= set(record) and all(math.isfinite(record[n]) for n in names)
    again = monitored_loss_terms(model, monitor_batch(data, binarize=True, seed=config().seed, labelled_scale=1.0))
    assert again == {n: history[-1][n] for n in names}


def test_tensorboard_gets_every_number_of_each_epochs_record(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = train(toy_model(), toy_data(), config(epochs=2, tensorboard=True), tmp_path, progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "loss_reconstruction", "loss_kl_z", "val_cluster_accuracy"} <= tags
    losses = events.Scalars("loss")
    assert [e.step for e in losses] == [1, 2]
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in history], rel=1e-6)


def test_a_callback_of_your_own_sees_every_epoch_and_its_numbers_reach_the_files(tmp_path):
    """The trainer is a loop plus callbacks: one of the caller's runs at the session's start, after
    each epoch (its additions land in metrics.jsonl and last.pt's history) and at the end."""
    from pyro_sus.callbacks import Callback

    class DecoderNorm(Callback):
        def __init__(self):
            self.calls = []

        def on_train_start(self, loop):
            self.calls.append(("start", loop.start_epoch))

        def on_epoch_end(self, loop, record):
            record["decoder_norm"] = float(loop.model.decoder[0].weight.detach().norm())
            self.calls.append(("epoch", record["epoch"]))

        def on_train_end(self, loop):
            self.calls.append(("end", loop.epoch))

    watcher = DecoderNorm()
    model = toy_model()
    history = train(model, toy_data(), config(), tmp_path / "run", progress=False, stop_after=3, callbacks=[watcher])
    assert watcher.calls == [("start", 0), ("epoch", 1), ("epoch", 2), ("epoch", 3), ("end", 3)]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line)["decoder_norm"] for line in lines]
    assert logged == [r["decoder_norm"] for r in history] and len(set(logged)) == 3
    assert logged[-1] == pytest.approx(float(model.decoder[0].weight.detach().norm()))
    assert [r["decoder_norm"] for r in load_checkpoint(tmp_path / "run" / "last.pt")["history"]] == logged
