"""Multi-GPU and multi-node through PyTorch's own stack: torchrun sets the environment,
``torch.distributed`` connects the processes, DDP or FSDP2 (``fully_shard``) wraps models."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set), else run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu" if device == "auto" else device)
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return DistEnv(rank=rank, world=world, local_rank=local, device=dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(module: nn.Module, env: DistEnv, strategy: str) -> nn.Module:
    """DDP (replicated weights) or FSDP2 (sharded weights, gradients and optimizer state)."""
    if not env.active or not any(p.requires_grad for p in module.parameters()):
        return module
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for child in _shard_units(module):
            fully_shard(child)
        return fully_shard(module)
    if strategy == "ddp":
        ids = [env.device.index] if env.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)
    raise ValueError(f"unknown distributed strategy {strategy!r}: choose ddp or fsdp")


def _shard_units(module: nn.Module) -> list[nn.Module]:
    """Transformer blocks (or top-level children) as FSDP units."""
    blocks = getattr(module, "blocks", None)
    return list(blocks) if isinstance(blocks, nn.ModuleList) else []


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A plain, unsharded CPU state dict (gathers FSDP shards; every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    module = unwrap(module)
    if dist.is_initialized() and _is_sharded(module):
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(module, options=opts)
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def load_full_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    module = unwrap(module)
    if dist.is_initialized() and _is_sharded(module):
        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
    else:
        module.load_state_dict(state)


def _is_sharded(module: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def mean_across(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.active:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.AVG if env.device.type == "cuda" else dist.ReduceOp.SUM)
        if env.device.type != "cuda":  # gloo has no AVG
            value /= env.world
    return value
