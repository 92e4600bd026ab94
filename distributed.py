"""Data parallelism under torchrun: the process group, the few collectives train.py needs, DDP and
FSDP2 wrapping, and checkpoints written by several ranks.

    torchrun --nproc_per_node=8 train.py --config configs/x.yaml

Started by torchrun (WORLD_SIZE > 1), `setup` joins the process group (NCCL on CUDA, gloo on
CPU); started plainly, every function here is the identity and nothing is initialised. The global
batch is defined without ranks: rank r takes a contiguous share of the step's B prompts, keeps
their global indices for its sampling seeds, and the collectives below (gather rewards, sum
token counts) make each update the one a single process would make.

Two wrappers, chosen by `run.distributed`:
- DDP (the tiny GPT, small HF models, LoRA): every rank holds the whole model; gradients are
  all-reduced once per mini-batch (`gradient_sync` skips the earlier micro-batches). Under LoRA
  only the adapters have gradients, so only they are all-reduced; the frozen base is loaded alike
  on every rank. FSDP2 with LoRA is refused (config.py): the adapters are small, and the frozen
  bf16 base beside float32 adapters in one FSDP unit is untested.
- FSDP2 `fully_shard` (Hugging Face models): each decoder layer, then the root (embeddings, final
  norm, LM head), is sharded over the ranks; parameters, gradients and AdamW state are stored as
  1/world shards, bf16 compute with float32 gradient reduction (MixedPrecisionPolicy) when the
  model computes in bf16. The log-prob path runs inside the root's forward, so FSDP2 gathers the
  LM head for it and reduce-scatters its gradient.
  Sampling gathers the weights (`full_weights`): each layer is all-gathered at its first use in
  prefill and kept until the rollout ends. The alternative, generating with the sharded forward,
  all-gathers every layer again for every generated token: hundreds of whole-model all-gathers
  per rollout. Gathering costs the bf16 weights in memory for the rollout's duration; gradients
  and optimizer state, most of the memory, stay sharded.

Checkpoints keep the layout of docs/design.md. DDP: rank 0 writes it as a single process would, with
every
rank's RNG state in trainer.pt. FSDP2: every rank writes its shard of the weights and AdamW state
with torch.distributed.checkpoint into ckpt_<step>/shards/, rank 0 adds a consolidated
save_pretrained export (loadable by transformers, eval.py and model.init), and renames the
directory once every rank has finished. torch.distributed.checkpoint reshards on load, so an FSDP2
checkpoint resumes at any number of ranks, or in one process.

Left out: tensor/pipeline/context parallelism, HSDP (2-D meshes), CPU offload, and loading a model
too large for one device's memory in float32 before sharding (every rank loads it whole, then
shards).
"""

import contextlib
import dataclasses
import gc
import os
import shutil

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import checkpoint

SHARDS = "shards"  # the torch.distributed.checkpoint folder inside an FSDP2 checkpoint
MODES = ("auto", "ddp", "fsdp")


# ----------------------------------------------------------------------------- process group


def setup(device: torch.device) -> torch.device:
    """Join the process group when torchrun started several processes; returns this rank's
    device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if device.type == "cuda":  # one GPU per process: LOCAL_RANK numbers them on each node
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return device


def teardown():
    if dist.is_initialized():
        # DDP sits in a reference cycle: free it (its reducer, its pending work) while the group and
        # the
        # interpreter are alive; left to interpreter shutdown, gloo now and then aborts the process
        gc.collect()
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier():
    if dist.is_initialized():
        dist.barrier()


def resolve_mode(mode: str, hf: bool, lora: bool = False) -> str:
    """run.distributed: auto is FSDP2 for Hugging Face models, DDP for the tiny GPT and for LoRA
    (small adapters,
    a frozen base every rank holds)."""
    return ("fsdp" if hf and not lora else "ddp") if mode == "auto" else mode


# ----------------------------------------------------------------------------- collectives


def all_gather_rows(tensor):
    """[b, ...] on each rank -> [world * b, ...], rank 0's rows first (every rank passes the same
    b)."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def all_reduce_sum(tensor):
    """The sum of `tensor` over ranks (a new tensor; the input itself in one process)."""
    if world_size() == 1:
        return tensor
    total = tensor.clone()
    dist.all_reduce(total)
    return total


def sum_floats(values: list) -> list:
    """Python numbers summed over ranks, in float64 (exact for counts); the list itself in one
    process."""
    if world_size() == 1:
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    return all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=device)).tolist()


def gather_lists(items: list) -> list:
    """Python lists of any length from every rank, concatenated in rank order."""
    if world_size() == 1:
        return items
    parts = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [item for part in parts for item in part]


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any (a stop one rank was asked for is every
    rank's)."""
    return sum_floats([float(flag)])[0] > 0


# ----------------------------------------------------------------------------- wrapping


def wrap(policy, mode: str, device):
    """DDP or FSDP2 around the policy under torchrun (mode 'ddp' or 'fsdp'); the policy itself
    otherwise.

    Build the optimizer after this: FSDP2 replaces the parameters by sharded DTensors.
    """
    if world_size() == 1:
        return policy
    if (
        mode == "ddp"
    ):  # DDP broadcasts rank 0's weights itself (the warm start every rank ran, or a random init)
        return DistributedDataParallel(
            policy, device_ids=[device.index] if device.type == "cuda" else None
        )
    return shard(policy)


def shard(policy):
    """FSDP2: each decoder layer is one unit, the root (HFPolicy: embeddings, final norm, LM head)
    another."""
    from torch.distributed.fsdp import (
        MixedPrecisionPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    for (
        tensor
    ) in policy.state_dict().values():  # fully_shard keeps each rank's slice of its own copy:
        dist.broadcast(tensor, src=0)  # make them all rank 0's (a warm start, a random init)
    bf16 = getattr(policy, "compute_dtype", torch.float32) == torch.bfloat16
    mixed_precision = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else MixedPrecisionPolicy()
    )
    layer_classes = set(getattr(getattr(policy, "model", None), "_no_split_modules", None) or ())
    for module in policy.modules():
        if type(module).__name__ in layer_classes:
            fully_shard(module, mp_policy=mixed_precision)
    # the root's inputs stay as they are: casting rebuilds dataclass arguments, and decode must
    # update
    # its HFDecodeState in place (the policy casts to its compute dtype itself)
    fully_shard(policy, mp_policy=dataclasses.replace(mixed_precision, cast_forward_inputs=False))
    for method in (
        "prefill",
        "decode",
    ):  # sampling entry points: FSDP2 gathers the root's weights for them too
        register_fsdp_forward_method(policy, method)
    return policy


def unwrap(policy):
    """The module itself: DDP's inner module; an FSDP2 module is its own (sharded) module."""
    return policy.module if isinstance(policy, DistributedDataParallel) else policy


def is_sharded(policy) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(policy, FSDPModule)


@contextlib.contextmanager
def full_weights(policy):
    """The module to sample with (prefill/decode are not forward, so they bypass DDP).

    FSDP2: every layer is all-gathered at its first use and kept until the block ends (see the
    file's docstring for why this beats generating with the sharded forward), then resharded.
    """
    if not is_sharded(policy):
        yield unwrap(policy)
        return
    from torch.distributed.fsdp import FSDPModule

    policy.set_reshard_after_forward(False)
    try:
        yield policy
    finally:
        for module in policy.modules():
            if isinstance(module, FSDPModule):
                module.reshard()
        # the layers' default; the root keeps its weights after
        policy.set_reshard_after_forward(True)
        policy.set_reshard_after_forward(False, recurse=False)  # forward, as FSDP2 does for a root


def gradient_sync(policy, last_micro_batch: bool):
    """Context for one micro-batch's forward and backward.

    DDP: all-reduce gradients only with the last micro-batch (`no_sync` before). FSDP2
    reduce-scatters
    every micro-batch: skipping it would keep whole unsharded gradients until the last one.
    """
    if isinstance(policy, DistributedDataParallel) and not last_micro_batch:
        return policy.no_sync()
    return contextlib.nullcontext()


def grad_norm_value(norm) -> float:
    """clip_grad_norm_'s total norm as a float (FSDP2 returns a DTensor)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    run_dir,
    step: int,
    policy,
    optimizer,
    trainer_state: dict,
    config: dict,
    keep: int,
    run_id: str = "",
) -> str:
    """runs/<name>/ckpt_<step>/ as docs/design.md lays it out, written by one rank (DDP) or all
    (FSDP2).

    trainer_state holds this rank's "rng"; with several ranks trainer.pt holds the list of all
    ranks'.
    """
    final = os.path.join(run_dir, f"ckpt_{step}")
    if world_size() == 1:
        return checkpoint.save_checkpoint(
            run_dir,
            step,
            policy,
            {**trainer_state, "optimizer": optimizer.state_dict()},
            config,
            keep=keep,
            run_id=run_id,
        )
    trainer_state = {**trainer_state, "rng": gather_lists([trainer_state["rng"]])}
    if is_sharded(policy):
        from torch.distributed import checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        temp = final + ".tmp-ranks"  # one name every rank knows
        if is_main():
            shutil.rmtree(temp, ignore_errors=True)
            os.makedirs(temp)
        barrier()
        model_state, optimizer_state = get_state_dict(policy, optimizer)
        dcp.save(
            {"model": model_state, "optimizer": optimizer_state},
            checkpoint_id=os.path.join(temp, SHARDS),
        )
        export_pretrained(policy, temp)
        if is_main():
            checkpoint.save_checkpoint(
                run_dir, step, None, trainer_state, config, keep=keep, temp=temp, run_id=run_id
            )
    elif is_main():
        checkpoint.save_checkpoint(
            run_dir,
            step,
            unwrap(policy),
            {**trainer_state, "optimizer": optimizer.state_dict()},
            config,
            keep=keep,
            run_id=run_id,
        )
    barrier()  # no rank goes on (and may read `latest`) before the checkpoint is complete
    return final


def export_pretrained(policy, directory):
    """The sharded HF model, consolidated on rank 0 and written with save_pretrained (all ranks call
    this)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(
        policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    # a tied LM head comes back as a copy of the embedding: keep one (named_parameters lists a
    # shared one once)
    tied = {name for name, _ in policy.named_parameters(remove_duplicate=False)} - {
        name for name, _ in policy.named_parameters()
    }
    if is_main():  # HFPolicy keeps the transformers model under .model
        policy.model.save_pretrained(
            directory,
            state_dict={
                name.removeprefix("model."): tensor
                for name, tensor in full.items()
                if name not in tied
            },
        )
        if policy.hf_tokenizer is not None:
            policy.hf_tokenizer.save_pretrained(directory)


def load_trainer_state(directory, policy, optimizer) -> dict:
    """trainer.pt of a checkpoint, with the optimizer (and, from FSDP2 shards, the weights) loaded.

    Returns the state with "rng" set to this rank's. Shards load at any number of ranks (resharded).
    """
    state = torch.load(os.path.join(directory, "trainer.pt"), weights_only=False)
    shards = os.path.join(directory, SHARDS)
    if os.path.isdir(shards):
        from torch.distributed import checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optimizer_state = get_state_dict(policy, optimizer)
        dcp.load({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=shards)
        set_state_dict(
            policy, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state
        )
    elif is_sharded(policy):
        raise ValueError(
            f"{directory} holds a whole optimizer state (a DDP or single-process run), "
            f"not FSDP2 shards: resume it with run.distributed: ddp"
        )
    else:
        optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    state["rng"] = rng[rank() % len(rng)] if isinstance(rng, list) else rng
    state["evals"] = checkpoint.read_evals(directory, state)
    return state
