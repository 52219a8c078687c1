"""The likelihoods the models score data with agree with torch's own."""

import pytest
import torch
import pyro.distributions as dist

from pyro_sus.distributions import BernoulliLogits
from conftest import DEVICES


@pytest.mark.parametrize("device", DEVICES)
def test_bernoulli_log_prob_and_gradient_match_torch_for_binary_and_grey_values_under_broadcasting(device):
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(3, 4, 50) * 4, torch.tensor([-40.0, -17.0, -1e-6, 0.0, 1e-6, 17.0, 40.0,
                                                                  88.0]).expand(3, 4, 8)], -1).to(device)
    for value in (torch.bernoulli(torch.full((4, 58), 0.5)).to(device), torch.rand(4, 58, device=device)):
        # value broadcasts over the first dim of the logits
        ours_logits = logits.clone().requires_grad_()
        theirs_logits = logits.clone().requires_grad_()
        ours = BernoulliLogits(logits=ours_logits, validate_args=False).to_event(1).log_prob(value)
        theirs = dist.Bernoulli(logits=theirs_logits, validate_args=False).to_event(1).log_prob(value)
        assert ours.shape == theirs.shape == (3, 4)
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-5)
        ours.sum().backward()
        theirs.sum().backward()
        torch.testing.assert_close(ours_logits.grad, theirs_logits.grad, rtol=1e-6, atol=1e-6)
        # The in-place arithmetic works on its own intermediates, never on the caller's tensors.
        assert torch.equal(ours_logits.detach(), logits)


def test_bernoulli_keeps_pyro_distribution_behaviour():
    d = BernoulliLogits(logits=torch.zeros(2, 3)).to_event(1)
    assert d.expand((5, 2)).batch_shape == (5, 2)
    assert d.sample().shape == (2, 3)
    torch.testing.assert_close(d.log_prob(torch.ones(2, 3)), torch.full((2,), 3 * torch.log(torch.tensor(0.5))))
