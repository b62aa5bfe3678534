"""Fully sharded data parallel (``trainer.strategy=fsdp``): PyTorch's per-parameter FSDP (``fully_shard``,
FSDP2) through Lightning's ``ModelParallelStrategy``.

Why not Lightning's ``FSDPStrategy`` (FSDP1): it wraps the whole LightningModule as one flat parameter,
EMA copy included, so the EMA update would pair a rank's shard of the model with an unrelated shard of
the EMA, and it refuses to run without a GPU, so no test here could show it works. With FSDP2 every
parameter is a ``DTensor`` sharded on its first dimension; the EMA copy is sharded the same way, so its
update is a purely local lerp of matching shards, and the whole path runs (and is tested) on CPU
processes over gloo.

Units: each network the algorithm calls as a module (denoiser, recognition model, mask gate, the AR
transformer) is one unit, and a network that declares ``fsdp_blocks = True`` (the transformers) also
shards each of its ``blocks`` separately, so only one block's full weights are gathered at a time. The
MLP and U-Net stay one unit each: the MLP reads its blocks' adaLN weights from its own forward.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import ConfigError


def strategy(world: int):
    """Lightning's ``ModelParallelStrategy`` set up as pure FSDP over all ``world`` processes, with a
    full (unsharded) checkpoint file written by rank 0, so resuming, ``vadd.io`` and the atomic checkpoint
    writer work as for one process."""
    try:
        from lightning.pytorch.strategies import ModelParallelStrategy
        from torch.distributed.fsdp import FSDPModule, fully_shard  # noqa: F401  (torch >= 2.6)
    except ImportError:
        raise ConfigError("trainer.strategy=fsdp needs lightning >= 2.4 and torch >= 2.6 (FSDP2); "
                         "use trainer.strategy=ddp with older versions") from None
    return ModelParallelStrategy(data_parallel_size=world, tensor_parallel_size=1,
                                 save_distributed_checkpoint=False)


def is_sharded(model: nn.Module) -> bool:
    return any(_is_dtensor(p) for p in model.parameters())


def _is_dtensor(t) -> bool:
    return hasattr(t, "to_local") and hasattr(t, "placements")


def local(tensors):
    """This rank's shards of a list of (possibly sharded) tensors: in-place updates of them update the
    sharded tensors."""
    return [t.to_local() if _is_dtensor(t) else t for t in tensors]


def shard(model: nn.Module, mesh) -> None:
    """Shard ``model`` (an algorithm: :class:`vadd.algorithms.MaskedDiffusion` or a subclass, or
    :class:`~vadd.algorithms.Autoregressive`) in place over the 1-D device ``mesh``."""
    from torch.distributed.fsdp import fully_shard

    own = [n for n, _ in model.named_parameters(recurse=False)]
    if own:
        raise ConfigError(f"FSDP shards the networks an algorithm calls; {type(model).__name__} holds "
                         f"parameters of its own ({', '.join(own)}), which would not be synchronised")
    for net in model.children():
        if not any(True for _ in net.parameters()):
            continue
        if getattr(net, "fsdp_blocks", False):
            for blk in net.blocks:
                fully_shard(blk, mesh=mesh)
        fully_shard(net, mesh=mesh)


def reshard(model: nn.Module) -> None:
    """Free the gathered full weights a forward without backward left behind (FSDP2 keeps a root unit's
    weights gathered after its forward, expecting the backward). Needed after every evaluation of a sharded
    model: the EMA copy is never backpropagated, so its next forward would reuse weights gathered before
    later EMA updates. A no-op for unsharded models."""
    if not is_sharded(model):
        return
    from torch.distributed.fsdp import FSDPModule
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


@torch.no_grad()
def gathered_copy(model: nn.Module, fresh: nn.Module) -> nn.Module:
    """``fresh`` (an unsharded model of the same architecture) loaded with ``model``'s full weights.
    Every rank must call it (the gathers are collective)."""
    state = {k: (v.full_tensor() if _is_dtensor(v) else v).detach().cpu() for k, v in model.state_dict().items()}
    fresh.load_state_dict(state)
    return fresh
