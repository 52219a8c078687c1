"""Stacked runs (pyro_sus.stacking, pyro_sus.stacked_training): one stacked step is E separate steps,
a stack of one is the run trained alone, and every member ends as an ordinary run folder."""

import json

import numpy as np
import pytest
import torch
import torch.distributions.normal as torch_normal

from pyro_sus.api import fit_seeds
from pyro_sus.run import evaluate, load, seed_folders
from pyro_sus.cli import main
from pyro_sus.io import load_checkpoint
from pyro_sus.models import build_model, get_model_class
from pyro_sus.models.base import Batch
from pyro_sus.stacked_training import StackedTrainingLoop, stacking_difference, train_stacked
from pyro_sus.stacking import member_state, stack_models, stacking_refusal
from pyro_sus.spec import TrainConfig
from pyro_sus.train import TrainingData, TrainingDiverged, TrainingLoop, train
from conftest import DEVICES, TINY

STACKABLE = [("m2", {}), ("gmdgm", {}), ("am2", {"a_dim": 3}), ("agmdgm", {"a_dim": 3}),
             ("gmdgm", {"latent_prior": "mixture", "latent_prior_options": {"components": 2}})]


class SharedNoise:
    """Standard-normal draws a stacked step takes (shape (..., E, B, z)), handed to each member's own
    step as its slice, in the same order: the members then see exactly the stack's noise."""

    def __init__(self, monkeypatch):
        self.draws, self.member, self.next = [], None, 0
        original = torch_normal._standard_normal

        def draw(shape, dtype, device):
            if self.member is None:
                self.draws.append(original(shape, dtype=dtype, device=device))
                return self.draws[-1]
            self.next += 1
            return self.draws[self.next - 1].select(-3, self.member)

        monkeypatch.setattr(torch_normal, "_standard_normal", draw)

    def as_member(self, member):
        self.member, self.next = member, 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,options", STACKABLE, ids=[f"{n}-{o.get('latent_prior', '')}" for n, o in STACKABLE])
def test_one_stacked_step_is_each_member_stepping_alone(name, options, device, monkeypatch):
    members, batch_size, x_dim = 3, 6, 10
    models = []
    for seed in range(members):
        torch.manual_seed(seed)
        models.append(build_model(name, x_dim=x_dim, n_slots=4, z_dim=2, hidden_dims=(8, 5), **options).to(device))
    stacked = stack_models(models)
    generator = torch.Generator().manual_seed(0)
    x_u = torch.rand(members, batch_size, x_dim, generator=generator).bernoulli().to(device)
    x_l = torch.rand(members, batch_size, x_dim, generator=generator).bernoulli().to(device)
    y_l = torch.randint(4, (members, batch_size), generator=generator).to(device)
    noise = SharedNoise(monkeypatch)

    def step(model, batch):
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        loss = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)  # elementwise: per member as alone
        optimizer.step()
        return loss.detach()

    weights = torch.ones(members, 1, device=device, requires_grad=True)
    stacked_loss = step(stacked, Batch(x_u, x_l, y_l, labelled_scale=0.7, member_weights=weights))
    member_losses = weights.grad.flatten()
    alone_losses = []
    for member, model in enumerate(models):
        noise.as_member(member)
        alone_losses.append(step(model, Batch(x_u[member], x_l[member], y_l[member], labelled_scale=0.7)))
        for key, value in model.state_dict().items():
            stacked_value = member_state(stacked, member)[key]
            scale = value.abs().max().clamp_min(1e-6)
            assert float((stacked_value - value).abs().max() / scale) < 1e-5, f"{key} of member {member} differs"
    alone_losses = torch.stack(alone_losses)
    torch.testing.assert_close(member_losses, alone_losses, rtol=1e-5, atol=0)
    torch.testing.assert_close(stacked_loss, alone_losses.sum(), rtol=1e-5, atol=0)


def toy_data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(60, 10, generator=generator)
    return TrainingData(x_labelled=x[:12], y_labelled=torch.arange(12) % 3, x_unlabelled=x[12:50],
                        x_val=x[50:], y_val=np.arange(10) % 4, known_classes=(0, 1, 2))


def toy_loop(seed, run_dir=None, data=None, init_seed=None, **overrides):
    torch.manual_seed(seed if init_seed is None else init_seed)
    model = build_model("gmdgm", x_dim=10, n_slots=4, z_dim=2, hidden_dims=(8,))
    options = dict(epochs=3, batch_size=16, learning_rate=1e-2, seed=seed, device="cpu")
    options.update(overrides)
    return TrainingLoop(model, data if data is not None else toy_data(seed), TrainConfig(**options), run_dir,
                        progress=False)


def test_a_stack_of_one_run_is_that_run_trained_alone():
    alone = toy_loop(3)
    alone_history = alone.run()
    stacked = toy_loop(3)
    (stacked_history,) = train_stacked([stacked], progress=False)
    for a, b in zip(alone_history, stacked_history):
        assert a.keys() == b.keys()
        assert abs(a["loss"] - b["loss"]) < 1e-5 * abs(a["loss"])
        assert abs(a["loss_reconstruction"] - b["loss_reconstruction"]) < 1e-4 * abs(a["loss_reconstruction"])
    for key, value in alone.model.state_dict().items():
        torch.testing.assert_close(stacked.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_each_member_keeps_its_own_data_order_and_records(tmp_path):
    loops = [toy_loop(seed, tmp_path / f"seed{seed}") for seed in (0, 1)]
    histories = train_stacked(loops, progress=False)
    assert [r["epoch"] for r in histories[0]] == [1, 2, 3]
    assert histories[0][-1]["loss"] != histories[1][-1]["loss"]
    for seed, loop in zip((0, 1), loops):
        saved = load_checkpoint(tmp_path / f"seed{seed}" / "last.pt")
        assert saved["epoch"] == 3 and saved["train_config"]["seed"] == seed
        # The data-order generator is the member's own, drawn as alone: after 3 epochs, as a run alone leaves it.
        alone = toy_loop(seed)
        alone.run()
        assert torch.equal(saved["rng"]["shuffle"], alone.generator.get_state())
        lines = (tmp_path / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_a_diverging_member_leaves_the_stack_and_the_others_train_on_unaffected(tmp_path):
    healthy = train_stacked([toy_loop(0), toy_loop(1)], progress=False)
    loops = [toy_loop(0), toy_loop(1, tmp_path / "bad")]
    with torch.no_grad():
        loops[1].model.decoder[-1].bias[0] = float("nan")  # member 1's first step is not finite
    outcomes = StackedTrainingLoop(loops, progress=False).run()
    assert isinstance(outcomes[1], TrainingDiverged) and outcomes[1].epoch == 1
    assert (tmp_path / "bad" / "last_good.pt").is_file()
    assert "last_good.pt" in str(outcomes[1])
    # Member 0 saw the same noise in both stacks: no term mixes members, so NaN in member 1 changes nothing.
    assert [r["loss"] for r in outcomes[0]] == [r["loss"] for r in healthy[0]]


def test_stacked_resume_is_exact_per_member(tmp_path):
    straight = [toy_loop(s, tmp_path / "straight" / f"seed{s}") for s in (0, 1)]
    train_stacked(straight, progress=False)
    first = [toy_loop(s, tmp_path / "stopped" / f"seed{s}") for s in (0, 1)]
    for loop in first:
        loop.stop_after = 1
    train_stacked(first, progress=False)
    resumed = [toy_loop(s, tmp_path / "stopped" / f"seed{s}", init_seed=s + 7) for s in (0, 1)]
    histories = train_stacked(resumed, resume=True, progress=False)
    assert [r["epoch"] for r in histories[1]] == [1, 2, 3]
    for a, b in zip(straight, resumed):
        for key, value in a.model.state_dict().items():
            assert torch.equal(value, b.model.state_dict()[key]), key


def test_runs_that_differ_in_more_than_the_seed_do_not_stack():
    assert "options differ" in stacking_difference([toy_loop(0), toy_loop(1, learning_rate=0.1)])
    data = TrainingData(toy_data().x_labelled, toy_data().y_labelled, toy_data().x_unlabelled[:20],
                        toy_data().x_val, toy_data().y_val)
    assert "differ in size" in stacking_difference([toy_loop(0), toy_loop(1, data=data)])
    with pytest.raises(ValueError, match="cannot train stacked"):
        StackedTrainingLoop([toy_loop(0), toy_loop(1, learning_rate=0.1)])


@pytest.mark.parametrize("name,options,reason", [
    ("gmdgm", {"posterior": "flow"}, "stacked form"),
    ("m2", {"y_estimator": "gumbel-softmax"}, "only 'enumerate' stacks"),
    ("m1", {}, "no plate over members"),
    ("catvae", {}, "no plate over members"),
])
def test_a_model_that_cannot_stack_says_why(name, options, reason):
    model = build_model(name, x_dim=10, n_slots=4, hidden_dims=(8,), **options)
    assert reason in stacking_refusal(model)
    with pytest.raises(ValueError, match="cannot be stacked"):
        stack_models([model, build_model(name, x_dim=10, n_slots=4, hidden_dims=(8,), **options)])


def test_every_model_that_enumerates_y_stacks():
    from pyro_sus.models import MODELS

    for name in ("m2", "gmdgm", "am2", "agmdgm"):
        model = get_model_class(name)(get_model_class(name).config_class(x_dim=6, n_slots=3, hidden_dims=(4,)))
        assert stacking_refusal(model) is None, name
    assert {"m2", "gmdgm", "am2", "agmdgm"} <= set(MODELS)


def test_cli_seeds_write_ordinary_run_folders_and_resume_together(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--model", "gmdgm", "--seeds", "0", "1", "--out", str(out), "--stop-after", "1"]
                + TINY) == 0
    assert "continue with: pyro-sus train --resume" in capsys.readouterr().out
    assert [p.name for p in seed_folders(out)] == ["seed0", "seed1"]
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "2 seeds: accuracy" in printed
    splits = []
    for seed in (0, 1):
        folder = out / f"seed{seed}"
        info = json.loads((folder / "run.json").read_text())
        assert info["train"]["seed"] == seed and info["stacked_with_seeds"] == [0, 1]
        run = load(folder)  # an ordinary run folder: load and evaluate it as any other
        results = evaluate(run)
        assert results["seed"] == seed and 0 <= results["test"]["accuracy"] <= 1
        assert json.loads((folder / "results.json").read_text())["test"]["accuracy"] == results["test"]["accuracy"]
        splits.append(np.load(folder / "split.npz")["labelled_idx"])
    assert not np.array_equal(splits[0], splits[1])  # each seed draws its own split


def test_fit_seeds_of_a_model_that_cannot_stack_trains_them_one_after_another(tmp_path, capsys):
    runs = fit_seeds("m1", "digits", tmp_path / "m1", seeds=[0, 1], hidden_classes=[7, 8, 9],
                     labelled_fraction=0.2, extra_slots=4, model_options={"hidden_dims": [16], "z_dim": 2},
                     train_options={"epochs": 1, "batch_size": 64, "device": "cpu"}, progress=True,
                     evaluate_after=False)
    assert "one after another" in capsys.readouterr().out
    assert [run.run_dir.name for run in runs] == ["seed0", "seed1"]
    assert "stacked_with_seeds" not in json.loads((runs[0].run_dir / "run.json").read_text())


def test_seeds_are_checked(tmp_path, capsys):
    for bad in ([], [1, 1], ["0"]):
        with pytest.raises(ValueError, match="seeds"):
            fit_seeds("gmdgm", "digits", tmp_path / "x", seeds=bad)
    with pytest.raises(ValueError, match="seeds=\\[...\\]"):
        fit_seeds("gmdgm", "digits", tmp_path / "x", seeds=[0, 1], train_options={"seed": 3})
    assert main(["train", "--seed", "1", "--seeds", "0", "1", "--out", str(tmp_path / "y")] + TINY) == 2
    assert "--seed or --seeds" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_stacked_best_validation_run_hands_back_each_members_best_epoch(tmp_path):
    loops = [toy_loop(s, tmp_path / f"seed{s}", epochs=4, select="best-validation", patience=1) for s in (0, 1)]
    histories = train_stacked(loops, progress=False)
    for loop, history in zip(loops, histories):
        best = load_checkpoint(loop.run_dir / "best.pt")
        assert history[-1]["selected_epoch"] <= history[-1]["epoch"]
        for key, value in best.items():
            assert torch.equal(loop.model.state_dict()[key], value)


def test_training_alone_is_unchanged_by_the_stacking_hooks():
    # The plate helper and per-point counts of a model that is not stacked are those of before.
    model = build_model("gmdgm", x_dim=10, n_slots=4, z_dim=2, hidden_dims=(8,))
    assert model.members is None and model.batch_points(torch.zeros(7, 10)) == 7
    history = train(model, toy_data(), TrainConfig(epochs=1, batch_size=16, device="cpu"), progress=False)
    assert np.isfinite(history[0]["loss"])


def test_a_traced_stack_computes_the_eager_stacks_loss_and_member_losses():
    from pyro_sus.tracing import TracedLoss

    models = [build_model("gmdgm", x_dim=10, n_slots=4, z_dim=2, hidden_dims=(8,)) for _ in range(3)]
    stacked = stack_models(models)
    x_u, x_l = torch.rand(3, 6, 10).bernoulli(), torch.rand(3, 6, 10).bernoulli()
    y_l = torch.randint(4, (3, 6))
    results = []
    for loss_fn in (stacked.loss, TracedLoss(stacked)):
        weights = torch.ones(3, 1, requires_grad=True)
        torch.manual_seed(5)
        loss = loss_fn(Batch(x_u, x_l, y_l, member_weights=weights))
        stacked.zero_grad()
        loss.backward()
        results.append((loss.detach(), weights.grad.flatten(), [p.grad.clone() for p in stacked.parameters()]))
    (eager, eager_members, eager_grads), (traced, traced_members, traced_grads) = results
    torch.testing.assert_close(traced, eager)
    torch.testing.assert_close(traced_members, eager_members)
    for a, b in zip(eager_grads, traced_grads):
        torch.testing.assert_close(b, a)


def test_a_stacks_named_terms_sum_to_each_members_loss():
    models = [build_model("gmdgm", x_dim=10, n_slots=4, z_dim=2, hidden_dims=(8,)) for _ in range(3)]
    stacked = stack_models(models)
    batch = Batch(torch.rand(3, 6, 10).bernoulli(), torch.rand(3, 5, 10).bernoulli(), torch.randint(4, (3, 5)),
                  labelled_scale=0.5)
    torch.manual_seed(2)
    terms = stacked.loss_terms(batch)
    assert {"reconstruction", "kl_z", "kl_y", "classifier_loss"} <= set(terms)
    weights = torch.ones(3, 1, requires_grad=True)
    torch.manual_seed(2)
    stacked.loss(Batch(batch.x_unlabelled, batch.x_labelled, batch.y_labelled, labelled_scale=0.5,
                       member_weights=weights)).backward()
    torch.testing.assert_close(sum(terms.values()), weights.grad.flatten(), rtol=1e-5, atol=1e-4)
