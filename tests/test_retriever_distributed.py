"""Negatives gathered across processes: two real gloo processes reproduce the single-process loss."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from retriever.training.loss import ContrastiveLoss


def _batch(tokens: int = 0):
    """Single vectors, or ``tokens`` vectors per item (late interaction, MaxSim scores)."""
    g = torch.Generator().manual_seed(0)
    shape = (8, tokens, 6) if tokens else (8, 6)
    q = torch.nn.functional.normalize(torch.randn(shape, generator=g), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(shape, generator=g), dim=-1)
    labels = torch.tensor([1, 2, 3, 1, 5, 6, 7, 8])  # items 0 and 3 share an entity, across the two halves
    return q, d, labels


def _worker(rank: int, world: int, init_file: str, results, tokens: int = 0) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        q, d, labels = _batch(tokens)
        half = slice(rank * 4, rank * 4 + 4)
        q_local = q[half].clone().requires_grad_(True)
        loss, _ = ContrastiveLoss(temperature_init=0.1)(q_local, d[half], labels[half])
        loss.backward()
        results[rank] = (float(loss), q_local.grad.abs().sum().item())
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
@pytest.mark.parametrize("tokens", [0, 3], ids=["single-vector", "maxsim"])
def test_gathered_negatives_match_the_full_batch_loss(tmp_path, tokens):
    q, d, labels = _batch(tokens)
    full, _ = ContrastiveLoss(temperature_init=0.1, gather=False)(q, d, labels)
    local_only, _ = ContrastiveLoss(temperature_init=0.1, gather=False)(q[:4], d[:4], labels[:4])

    manager = mp.Manager()
    results = manager.dict()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), results, tokens), nprocs=2, join=True)
    per_process = [results[0][0], results[1][0]]
    # each process scores its queries against the global batch: the mean equals the full-batch loss
    assert sum(per_process) / 2 == pytest.approx(full.item(), rel=1e-5)
    assert per_process[0] != pytest.approx(local_only.item(), rel=1e-3)  # not just in-process negatives
    assert results[0][1] > 0 and results[1][1] > 0  # gradients reach each process's own queries
