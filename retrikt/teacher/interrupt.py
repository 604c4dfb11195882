"""A cancel that lands inside one long pass through the teacher instead of after it.

Jobs check their stop flag between steps, but one step can hold the teacher for seconds: on 2 CPU cores a
prompt-tuning step took 4-12 s (SST-2 to RTE), a scoring batch or a generation prefill 1-3 s. While
`interruptible` is active, every block of the model checks the flag when it finishes, forward and (for a pass
that trains something) backward, and raises `Cancelled` there. The pass is abandoned whole: nothing it would
have produced is kept, which is what a cancelled step means anyway.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from ..errors import check_stop

WHAT = "cancelled inside a teacher pass"


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's stack of transformer blocks (its longest ModuleList), else the model itself."""
    stacks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(stacks, key=len)) if stacks else [model]


@contextmanager
def interruptible(model: torch.nn.Module, should_stop: Callable[[], bool] | None, what: str = WHAT) -> Iterator[None]:
    """Let `should_stop()` interrupt `model` between its blocks until the block exits (None: no hooks at all).

    Only for a model one job owns: a shared model would raise in another thread's pass."""
    if should_stop is None:
        yield
        return

    def on_grad(grad):
        check_stop(should_stop, what)

    def after_block(module, args, output):
        check_stop(should_stop, what)
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(hidden, torch.Tensor) and hidden.requires_grad:
            hidden.register_hook(on_grad)  # the backward pass reaches this block's output

    handles = [block.register_forward_hook(after_block) for block in _blocks(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
