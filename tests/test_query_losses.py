"""The query losses the step-3 ablation tries for a student that retrieves in the teacher's key space: a gradient
step on each moves the student's query toward its own input's teacher key (or its teacher ranking)."""
import pytest
import torch
from torch.nn import functional as F

from bench.unlabeled_ablation import infonce_loss, listwise_loss


def _toy(seed=0, n=6, dim=8, bank_rows=20):
    generator = torch.Generator().manual_seed(seed)
    teacher = F.normalize(torch.randn(n, dim, generator=generator), dim=-1)
    bank = F.normalize(torch.randn(bank_rows, dim, generator=generator), dim=-1)
    raw = torch.randn(n, dim, generator=generator)
    return teacher, bank, raw


def _step(loss_of, raw, lr=0.5):
    raw = raw.clone().requires_grad_(True)
    loss = loss_of(F.normalize(raw, dim=-1))
    loss.backward()
    with torch.no_grad():
        moved = raw - lr * raw.grad
    return F.normalize(raw.detach(), dim=-1), F.normalize(moved, dim=-1), loss.item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_infonce_moves_each_query_toward_its_teacher_key(seed):
    teacher, _, raw = _toy(seed)
    before, after, loss = _step(lambda q: infonce_loss(q, teacher), raw)
    assert loss > 0
    gained = (after * teacher).sum(-1) - (before * teacher).sum(-1)
    assert (gained > 0).float().mean() >= 0.8, gained
    assert infonce_loss(after, teacher) < infonce_loss(before, teacher)


def test_infonce_is_lowest_when_the_query_is_its_teacher_key():
    teacher, _, raw = _toy(3)
    assert infonce_loss(teacher, teacher) < infonce_loss(F.normalize(raw, dim=-1), teacher)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_listwise_step_brings_the_students_ranking_of_store_neighbours_toward_the_teachers(seed):
    teacher, bank, raw = _toy(seed)
    before, after, loss = _step(lambda q: listwise_loss(q, teacher, bank, k=5), raw)
    assert loss > 0
    assert listwise_loss(after, teacher, bank, k=5) < listwise_loss(before, teacher, bank, k=5)


def test_listwise_is_zero_when_the_query_is_its_teacher_key():
    teacher, bank, _ = _toy(4)
    assert listwise_loss(teacher, teacher, bank, k=5).item() == pytest.approx(0.0, abs=1e-6)
