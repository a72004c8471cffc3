import pytest
import torch
from torch import nn

from digitlab.optim import FusedAdam, one_cycle_lr


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 10))


def _train(model: nn.Module, step, steps: int = 25) -> None:
    """``steps`` updates on fixed random batches; ``step(i)`` makes update i."""
    data = torch.Generator().manual_seed(7)
    for i in range(steps):
        x = torch.rand(8, 1, 6, 6, generator=data)
        y = torch.randint(0, 10, (8,), generator=data)
        nn.functional.cross_entropy(model(x), y).backward()
        step(i)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_same_weights_as_torch_optim_with_one_cycle(kind):
    total = 25
    theirs = _net()
    reference = (torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)(
        theirs.parameters(), lr=3e-3, eps=1e-8, weight_decay=5e-4, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=3e-3, total_steps=total,
                                                   pct_start=0.2, cycle_momentum=False)

    def their_step(i):
        reference.step()
        schedule.step()
        reference.zero_grad(set_to_none=True)

    _train(theirs, their_step, total)
    ours = _net()
    adam = FusedAdam(ours.parameters(), lr=3e-3, eps=1e-8, weight_decay=5e-4,
                     decoupled=kind == "adamw")

    def our_step(i):
        adam.step(one_cycle_lr(adam.steps, total, 3e-3, 0.2))
        adam.zero_grad()

    _train(ours, our_step, total)
    assert adam.steps == total
    for a, b in zip(theirs.state_dict().values(), ours.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(_net().state_dict()["4.weight"], ours.state_dict()["4.weight"])


def test_one_cycle_matches_torch_at_every_step():
    for total, pct in ((100, 0.2), (7, 0.3), (2, 0.2)):
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=total,
                                                       pct_start=pct, cycle_momentum=False)
        for step in range(total):
            assert one_cycle_lr(step, total, 0.5, pct) == optimizer.param_groups[0]["lr"]
            optimizer.step()
            schedule.step()
    assert one_cycle_lr(0, 100, 0.5, 0.2) == pytest.approx(0.5 / 25)
    assert one_cycle_lr(19, 100, 0.5, 0.2) == pytest.approx(0.5)


def test_state_round_trips_and_reads_torch_optims_own():
    model = _net()
    adam = FusedAdam(model.parameters(), lr=1e-3, eps=1e-7)
    _train(model, lambda i: (adam.step(), adam.zero_grad()), 3)
    again = FusedAdam(_net().parameters(), lr=1e-3, eps=1e-7)
    again.load_state_dict(adam.state_dict())
    assert again.steps == 3
    assert all(torch.equal(a, b) for a, b in zip(again.exp_avg_sq, adam.exp_avg_sq,
                                                 strict=True))
    # a checkpoint written by torch.optim.Adam (before this class) resumes
    theirs = _net()
    reference = torch.optim.Adam(theirs.parameters(), lr=1e-3, eps=1e-7, fused=True)
    _train(theirs, lambda i: (reference.step(), reference.zero_grad()), 4)
    ours = FusedAdam(theirs.parameters(), lr=1e-3, eps=1e-7)
    ours.load_state_dict(reference.state_dict())
    assert ours.steps == 4
    assert torch.equal(ours.exp_avg[0], reference.state[ours.params[0]]["exp_avg"])


def test_parameters_without_gradients_are_left_alone():
    used, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    adam = FusedAdam([used, unused], lr=0.1, eps=1e-8)
    (used * 2).sum().backward()
    adam.step()
    assert not torch.equal(used, torch.ones(3)) and torch.equal(unused, torch.ones(3))
    assert float(adam.state_steps[0]) == 1 and float(adam.state_steps[1]) == 0


def test_a_step_without_gradients_only_counts():
    adam = FusedAdam([nn.Parameter(torch.ones(2))], lr=0.1, eps=1e-8)
    adam.step()
    assert adam.steps == 1 and float(adam.state_steps[0]) == 0


def test_frozen_parameters_keep_torch_optims_numbering_and_wrong_states_are_refused():
    model = _net()
    model[0].bias.requires_grad_(False)
    theirs = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    _train(model, lambda i: (theirs.step(), theirs.zero_grad()), 2)
    ours = FusedAdam(model.parameters(), lr=1e-3, eps=1e-8)
    ours.load_state_dict(theirs.state_dict())
    assert torch.equal(ours.exp_avg[2], theirs.state[model[1].weight]["exp_avg"])
    assert float(ours.state_steps[1]) == 0 and ours.steps == 2
    with pytest.raises(ValueError, match="parameters"):
        FusedAdam(list(model.parameters())[:-1], lr=1e-3, eps=1e-8).load_state_dict(
            theirs.state_dict())
    other = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 9))
    with pytest.raises(ValueError, match="shape"):
        FusedAdam(other.parameters(), lr=1e-3, eps=1e-8).load_state_dict(theirs.state_dict())


def test_parameters_of_mixed_kinds_are_refused():
    with pytest.raises(ValueError, match="one device"):
        FusedAdam([nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2).double())],
                  lr=0.1, eps=1e-8)


def test_gradients_kept_beside_the_parameters_update_as_grad_does():
    """The dense trainer's way: plain tensors, its gradients in tensors of its own."""
    data = torch.Generator().manual_seed(3)
    grads = [torch.randn(5, generator=data) for _ in range(4)]
    leaf = nn.Parameter(torch.ones(5))
    by_grad = FusedAdam([leaf], lr=0.01, eps=1e-8, weight_decay=0.1)
    plain, kept = torch.ones(5), torch.empty(5)
    beside = FusedAdam([plain], lr=0.01, eps=1e-8, weight_decay=0.1, grads=[kept])
    for g in grads:
        leaf.grad = g.clone()
        by_grad.step()
        kept.copy_(g)
        beside.step()
    assert torch.equal(leaf.detach(), plain) and not torch.equal(plain, torch.ones(5))
    assert beside.steps == 4 and float(beside.state_steps[0]) == 4
