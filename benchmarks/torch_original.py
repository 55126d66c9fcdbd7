"""The original SR-SAN network and optimiser in PyTorch (CPU), as ../shared/ORIGINAL.md
describes the original code: ``nn.Embedding`` and an ``nn.TransformerEncoder`` of post-LN
layers (dropout, ReLU, sequence-first, no final norm), every parameter drawn from
U(-1/sqrt(D), 1/sqrt(D)), the tied scores ``h E[1:]^T``, ``nn.CrossEntropyLoss`` and Adam
with ``weight_decay`` (coupled L2). Left out: the original also registers an unused template
layer, which only consumes random draws and weight decay.

Benchmarks hold srsan-np against it: ``bench_train.py`` times its step, ``reproduce_paper.py
--torch-seeds`` trains it with the original's protocol on the same batches srsan-np builds.
"""

from __future__ import annotations

import numpy as np


def build(config, seed, lr=1e-3, weight_decay=1e-5):
    """``(scores, modules, optimizer)`` for a :class:`srsan_np.model.Config`, or None
    without torch: ``scores(batch)`` is the ``(B, V)`` tensor of a :class:`~srsan_np.data.Batch`
    (float32; the modules' mode, training or eval, is the caller's)."""
    try:
        import torch
    except ImportError:
        return None
    nn = torch.nn
    torch.manual_seed(seed)
    D = config.hidden
    embedding = nn.Embedding(config.n_items + 1, D)
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(D, config.heads, config.ff_mult * D, config.dropout),
        config.layers, enable_nested_tensor=False)
    modules = nn.ModuleList([embedding, encoder])
    for p in modules.parameters():  # the original's initialisation
        nn.init.uniform_(p, -1.0 / D ** 0.5, 1.0 / D ** 0.5)
    optimizer = torch.optim.Adam(modules.parameters(), lr=lr, weight_decay=weight_decay)

    def scores(batch):
        inputs = torch.from_numpy(batch.inputs.astype(np.int64))
        x = encoder(embedding(inputs).transpose(0, 1)).transpose(0, 1)  # (B, T, D)
        h = x[torch.arange(x.shape[0]), torch.from_numpy(batch.last.astype(np.int64))]
        return h @ embedding.weight[1:].T  # (B, V), tied

    return scores, modules, optimizer


def stepper(config, seed=0, lr=1e-3, weight_decay=1e-5):
    """``step(batch) -> loss``: one training step (training mode), or None without torch."""
    built = build(config, seed, lr, weight_decay)
    if built is None:
        return None
    import torch

    scores, modules, optimizer = built
    modules.train()
    cross_entropy = torch.nn.CrossEntropyLoss()

    def step(batch):
        loss = cross_entropy(scores(batch), torch.from_numpy(batch.targets.astype(np.int64)) - 1)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        return loss.item()

    step.scores, step.modules, step.optimizer = scores, modules, optimizer
    return step
