"""The default local update: a plain AdamW loop that calls the task and algorithm hooks.

No ``transformers.Trainer`` here on purpose: building one per client per round costs a
``datasets.map`` and a ``gc.collect()`` each time (STACK.md §5c), which would dominate the
few steps a federated client takes. The task supplies collation and the loss (trl's losses for
DPO), algorithms add loss terms and per-step corrections, and this loop does the rest.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack
from typing import Any

from .messages import ClientInstruction, ClientUpdate


def draw_indices(n: int, need: int, seed: int) -> list[int]:
    """The reference's per-round draw: ``need`` of the client's ``n`` samples without
    replacement (all of them when ``n <= need``), seeded by the round."""
    return random.Random(seed).sample(range(n), min(n, need))


def batch_order(indices: list[int], batch_size: int, num_batches: int, seed: int):
    """Yield ``num_batches`` batches over ``indices``, reshuffling for each further epoch
    (like a ``DataLoader`` with a seeded shuffle and ``max_steps`` past one epoch)."""
    rng = random.Random(seed + 1)
    pool: list[int] = []
    for _ in range(num_batches):
        batch: list[int] = []
        while len(batch) < batch_size:
            if not pool:
                pool = indices[:]
                rng.shuffle(pool)
            batch.append(pool.pop())
        yield batch


def local_update(ctx, instruction: ClientInstruction, data) -> ClientUpdate:
    """The core's training loop for one client (used unless the task implements
    ``fedllm_local_update``). Losses and metrics are summed on the device and read back once
    per client, so a GPU never waits on the host between micro-batches."""
    import torch

    t0 = time.perf_counter()
    tc = ctx.config.train
    n = len(data)
    steps = ctx.call("fedllm_local_steps", client_id=instruction.client_id,
                     num_samples=n) or tc.local_steps
    micro = tc.batch_size
    draw = draw_indices(n, steps * tc.grad_accum * micro, instruction.seed)
    picked = data.select(draw)
    cols = picked.column_names
    columns = {c: picked[c] for c in cols}  # one Arrow read per client per round
    examples = [{c: columns[c][i] for c in cols} for i in range(len(draw))]

    ctx.set_params(instruction.params)
    params = ctx.trainable
    torch.manual_seed(instruction.seed)  # dropout: reproducible, also after --resume
    opt = torch.optim.AdamW(params.values(), lr=instruction.lr, weight_decay=tc.weight_decay)
    ctx.call("fedllm_client_begin", instruction=instruction, params=params)
    with ExitStack() as wrapped:
        model, opt = _wrapped(ctx, instruction, ctx.model, opt, wrapped)
        sums, count = _steps(ctx, instruction, model, opt, examples, steps)
    ctx.model.eval()
    out = {k: float(v) / count for k, v in sums.items()}  # the one host read per client
    out["local_steps"] = steps
    out["time_s"] = time.perf_counter() - t0
    return ClientUpdate(client_id=instruction.client_id, num_samples=n,
                        params=ctx.get_params(), metrics=out)


def _wrapped(ctx, instruction: ClientInstruction, model: Any, opt: Any,
             stack: ExitStack) -> tuple[Any, Any]:
    """Let each privacy component that wraps training (DP-SGD) replace model and optimizer,
    in config order; their context managers stay open for the client's steps."""
    for comp in ctx.plugins.of("privacy"):
        if comp.implements("fedllm_wrap_training"):
            cm = comp.call("fedllm_wrap_training", ctx=ctx, instruction=instruction,
                           model=model, optimizer=opt)
            if cm is not None:
                model, opt = stack.enter_context(cm)
    return model, opt


def _steps(ctx, instruction: ClientInstruction, model: Any, opt: Any,
           examples: list[dict[str, Any]], steps: int) -> tuple[dict[str, Any], int]:
    """The client's optimizer steps; returns the summed metrics and the micro-batch count."""
    import torch
    from accelerate.utils import send_to_device

    tc = ctx.config.train
    params = ctx.trainable
    model.train()
    acc = ctx.accelerator
    sums: dict[str, Any] = {}
    count = 0
    batches = batch_order(list(range(len(examples))), tc.batch_size, steps * tc.grad_accum,
                          instruction.seed)
    for _step in range(steps):
        for _ in range(tc.grad_accum):
            idx = next(batches)
            batch = ctx.call("fedllm_collate", examples=[examples[i] for i in idx])
            batch = send_to_device(batch, ctx.device)
            with acc.autocast():
                loss, metrics = ctx.call("fedllm_loss", model=model, batch=batch)
            total = loss
            term = ctx.call("fedllm_loss_terms", instruction=instruction, params=params)
            if term is not None:
                total = total + term
            acc.backward(total / tc.grad_accum)
            _add(sums, "train_loss", loss.detach())
            for k, v in (metrics or {}).items():
                _add(sums, k, v.detach() if isinstance(v, torch.Tensor) else v)
            count += 1
        scaler = getattr(acc, "scaler", None)  # fp16: accelerate scaled the loss
        if scaler is not None:
            scaler.unscale_(opt)
        if tc.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(list(params.values()), tc.max_grad_norm)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        ctx.call("fedllm_after_step", instruction=instruction, params=params, lr=instruction.lr)
    return sums, count


def _add(sums: dict[str, Any], key: str, value: Any) -> None:
    """Sum in float64, on the value's device when it is a tensor."""
    if hasattr(value, "double"):
        value = value.double()
    else:
        value = float(value)
    sums[key] = value if key not in sums else sums[key] + value
