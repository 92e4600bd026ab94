"""Per-token log-probs (and entropy) of chosen tokens, straight from hidden states and the LM head.

RL needs log pi(y_t | y_<t) for every response token: with grad for the PPO/GRPO ratio, without
grad for the old and reference log-probs. The obvious `log_softmax(hidden @ W.T).gather(targets)`
holds a float32 [tokens, vocab] tensor, then its log_softmax, then the gradients of both: at
Qwen's vocabulary (151,936) and 4,096 response tokens that is 2.5 GB per copy, and the most common
out-of-memory of RL training.

`fused_logprobs` walks the tokens in chunks. For each chunk it writes the logits into one reused
[chunk, vocab] buffer, keeps the chosen token's logit, the log-sum-exp and (on request) the entropy,
and goes on to the next chunk. Its backward (a custom autograd.Function) recomputes each chunk's
logits rather than storing them, and accumulates the gradients in float32:

    z = h W^T / T,   p = softmax(z),   H = -sum_v p_v log p_v
    dL/dz = g_logp * (onehot(y) - p) - g_H * p * (log p + H)
    dL/dh = (dL/dz) W / T,   dL/dW = sum over chunks of (dL/dz)^T h / T

It costs one extra matmul (four instead of three) and saves the [tokens, vocab] tensors: memory is
O(chunk x vocab). When every token fits in one chunk (a small vocabulary), the forward keeps that
chunk's logits for the backward instead, which is no more memory than the chunk buffer itself. Ids
at or beyond `valid_vocab` (a padded embedding table) are left out of the
softmax, as the sampler leaves them out: the head is sliced to its first `valid_vocab` rows, which
is the same as setting their logits to -inf, and those rows get a zero gradient.

Precision: logits, softmax, entropy and gradient accumulation are float32 (float64 for float64
inputs, so gradcheck works). bfloat16/float16 inputs: on CUDA the matmuls run in the input dtype
and write float32 results straight from cuBLAS's float32 accumulator (`torch.mm(..., out_dtype=)`);
elsewhere (CPU) the head is upcast to float32 once per pass, a transient float32 copy of the weight.
Gradients come back in the inputs' dtypes.

Left out: a Triton/CUDA kernel (the four matmuls dominate and are already BLAS calls), double
backward, ignore_index (the caller passes only the response positions), vocabulary-parallel heads.
`naive_logprobs` is the plain reference (full logits) for the tests, the benchmark and the
`rl.logprob: naive` switch. `head_logprobs` is what the policies (model.GPT, hf_policy.HFPolicy)
call: it sends the response positions the mask selects through one of the two and scatters the
results back to [R, L]. The paper has no equation for this step: it is the log pi of the
PPO-clip ratio, and the entropy feeds the entropy-adaptive advantage (Sec. 4.2.3).
"""

import torch

# Rows per chunk when chunk_size is None: as many as fit this many bytes of float32 logits. The
# matmuls slow down as chunks shrink: at Qwen's vocabulary and 4,096 tokens, fwd+bwd on one CPU
# thread took 1.30x the naive path's CPU time with 220-row chunks, 1.21x with 512, 1.18x with 1024.
# 320 MiB (552 rows there, an eighth of one [4096, vocab] float32 tensor) is the compromise. GPUs
# want bigger chunks to fill the tensor cores.
CHUNK_BYTES = {"cpu": 320 * 2**20, "cuda": 1024 * 2**20}

_LOW_PRECISION = (torch.bfloat16, torch.float16)
# torch.mm(a, b, out_dtype=torch.float32) on CUDA (torch >= 2.8): bf16/fp16 operands, fp32 result.
_HAS_MM_OUT_DTYPE = "dtype_out" in torch.ops.aten.mm.overloads()


def fused_logprobs(
    hidden,
    weight,
    targets,
    *,
    temperature=1.0,
    chunk_size=None,
    valid_vocab=None,
    return_entropy=False,
):
    """log_softmax(hidden @ weight.T / temperature)[m, targets[m]] over the first valid_vocab ids,
    chunked.

    hidden [M, d], weight [V, d] (the LM head, possibly tied to the embedding), targets [M] integer
    ids. chunk_size: tokens per chunk (None: fit CHUNK_BYTES of logits). Returns logp [M] float32
    (float64
    for float64 inputs), and (logp, entropy) when return_entropy. Differentiable in hidden and
    weight; under torch.no_grad (or when neither needs grad) nothing is saved for backward.
    """
    valid_vocab = _check_inputs(hidden, weight, targets, temperature, valid_vocab)
    if chunk_size is None:
        per_row = valid_vocab * 4
        chunk_size = max(1, CHUNK_BYTES.get(hidden.device.type, CHUNK_BYTES["cuda"]) // per_row)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    targets = targets.long()
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        logp, entropy = _FusedLogprobs.apply(
            hidden, weight, targets, 1.0 / temperature, chunk_size, valid_vocab, return_entropy
        )
    else:  # old / reference log-probs: no autograd graph, nothing saved
        logp, _, entropy, _ = _forward(
            hidden,
            weight,
            targets,
            1.0 / temperature,
            chunk_size,
            valid_vocab,
            return_entropy,
            keep_logits=False,
        )
    return (logp, entropy) if return_entropy else logp


def naive_logprobs(
    hidden, weight, targets, *, temperature=1.0, valid_vocab=None, return_entropy=False
):
    """The plain reference: full [M, valid_vocab] logits, log_softmax, gather. Same arguments and
    returns."""
    valid_vocab = _check_inputs(hidden, weight, targets, temperature, valid_vocab)
    return naive_logprobs_unchecked(
        hidden, weight, targets.long(), temperature, valid_vocab, return_entropy
    )


def naive_logprobs_unchecked(hidden, weight, targets, temperature, valid_vocab, return_entropy):
    """naive_logprobs without the argument checks (their .item() would split a torch.compile
    graph)."""
    logits = (hidden @ weight[:valid_vocab].T).to(_compute_dtype(hidden.dtype))  # [M, Vv]
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)  # [M, Vv]
    logp = logp_all.gather(1, targets[:, None]).squeeze(1)  # [M]
    if not return_entropy:
        return logp
    return logp, -(logp_all.exp() * logp_all).sum(-1)


def head_logprobs(
    hidden, targets, response_mask, weight, temperature, valid_vocab, return_entropy, fused
):
    """The policies' entry point: hidden [R, L, d] predicting targets [R, L] -> logp [R, L], entropy
    [R, L] or None.

    Only positions where response_mask is 1 reach the head; the others are 0 in the result.
    """
    select = response_mask.bool()
    compute = fused_logprobs if fused else naive_logprobs
    result = compute(
        hidden[select],
        weight,
        targets[select],
        temperature=temperature,
        valid_vocab=valid_vocab,
        return_entropy=return_entropy,
    )
    logp_selected, entropy_selected = result if return_entropy else (result, None)
    scatter = lambda values: hidden.new_zeros(select.shape, dtype=torch.float32).masked_scatter(
        select, values.float()
    )
    return scatter(logp_selected), (scatter(entropy_selected) if return_entropy else None)


# ----------------------------------------------------------------------------- the chunked passes


class _FusedLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, inv_temp, chunk_size, valid_vocab, return_entropy):
        # all tokens in one chunk (a small vocabulary): keeping that chunk's logits costs no more
        # memory than the buffer itself and saves the backward's recompute, a quarter of the matmuls
        one_chunk = hidden.shape[0] <= chunk_size
        logp, lse, entropy, logits = _forward(
            hidden,
            weight,
            targets,
            inv_temp,
            chunk_size,
            valid_vocab,
            return_entropy,
            keep_logits=one_chunk,
        )
        ctx.save_for_backward(hidden, weight, targets, lse, entropy, logits)
        ctx.inv_temp, ctx.chunk_size, ctx.valid_vocab = inv_temp, chunk_size, valid_vocab
        ctx.set_materialize_grads(False)  # an unused output (often the entropy) arrives as None
        return logp, entropy

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, targets, lse, entropy, logits = ctx.saved_tensors
        grad_hidden, grad_weight = _backward(
            hidden,
            weight,
            targets,
            lse,
            entropy,
            logits,
            grad_logp,
            grad_entropy,
            ctx.inv_temp,
            ctx.chunk_size,
            ctx.valid_vocab,
            *ctx.needs_input_grad[:2],
        )
        return grad_hidden, grad_weight, None, None, None, None, None


def _forward(hidden, weight, targets, inv_temp, chunk_size, valid_vocab, with_entropy, keep_logits):
    """-> logp [M], lse [M] (log-sum-exp of the tempered logits), entropy [M] or None, and a copy of
    the logits [M, Vv] when keep_logits (one chunk only) or None."""
    M = hidden.shape[0]
    dtype = _compute_dtype(hidden.dtype)
    head = _head_operand(weight, valid_vocab)  # [Vv, d]
    logp = torch.empty(M, dtype=dtype, device=hidden.device)
    lse = torch.empty_like(logp)
    entropy = torch.empty_like(logp) if with_entropy else None
    rows = min(chunk_size, M)
    # one chunk's buffers, reused by every chunk: large fresh allocations cost page faults and
    # zeroing
    logits_buf = hidden.new_empty(rows, valid_vocab, dtype=dtype)  # [c, Vv]
    exp_buf = torch.empty_like(logits_buf) if with_entropy else None
    kept_logits = None
    for start in range(0, M, chunk_size):
        end = min(start + chunk_size, M)
        z = _chunk_logits(hidden[start:end], head, inv_temp, logits_buf[: end - start])  # [c, Vv]
        if keep_logits:
            kept_logits = z.clone()
        target_logit = z.gather(1, targets[start:end, None]).squeeze(1)  # [c]
        z_max = z.amax(1, keepdim=True)  # [c, 1]
        z.sub_(z_max)  # in place from here on: z is not needed again
        if with_entropy:
            e = torch.exp(z, out=exp_buf[: end - start])  # exp(z - max)
            sum_exp = e.sum(1)
            # H = lse - sum p z = log sum_exp - sum e (z - max) / sum_exp
            entropy[start:end] = sum_exp.log() - z.mul_(e).sum(1) / sum_exp
        else:
            sum_exp = z.exp_().sum(1)
        lse[start:end] = z_max.squeeze(1) + sum_exp.log()
        logp[start:end] = target_logit - lse[start:end]
    return logp, lse, entropy, kept_logits


def _backward(hidden, weight, targets, lse, entropy, kept_logits, grad_logp, grad_entropy,
              inv_temp, chunk_size, valid_vocab, need_hidden, need_weight):  # fmt: skip
    """Recompute each chunk's logits (or copy kept_logits, the single chunk's) and accumulate
    grad_hidden [M, d] and grad_weight [V, d]."""
    M = hidden.shape[0]
    dtype = _compute_dtype(hidden.dtype)
    head = _head_operand(weight, valid_vocab)  # [Vv, d]
    if grad_logp is None:
        grad_logp = torch.zeros_like(lse)
    grad_hidden = (
        torch.empty(hidden.shape, dtype=dtype, device=hidden.device) if need_hidden else None
    )
    grad_weight = grad_head = None
    if need_weight:  # the fp32 accumulator; rows past valid_vocab keep a zero gradient
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device)  # [V, d]
        grad_head = grad_weight[:valid_vocab]  # [Vv, d]
    rows = min(chunk_size, M)
    # [c, Vv]: logits, then dL/dz in place
    dz_buf = hidden.new_empty(rows, valid_vocab, dtype=dtype)
    p_buf = torch.empty_like(dz_buf) if grad_entropy is not None else None
    low_precision = head.dtype != dtype  # bf16/fp16 operands on CUDA
    low_buf = torch.empty_like(dz_buf, dtype=head.dtype) if low_precision else None  # [c, Vv]
    # [Vv, d] fp32
    chunk_grad = torch.empty_like(grad_head) if low_precision and need_weight else None
    for start in range(0, M, chunk_size):
        end = min(start + chunk_size, M)
        c = end - start
        h = hidden[start:end].to(head.dtype)  # [c, d]
        if (
            kept_logits is not None
        ):  # copied, not modified in place: backward may run again (retain_graph)
            dz = dz_buf.copy_(kept_logits)  # z [M, Vv]
        else:
            dz = _chunk_logits(h, head, inv_temp, dz_buf[:c])  # z [c, Vv]
        rows_of = slice(start, end)
        _logits_to_grad(dz, rows_of, lse, targets, grad_logp, grad_entropy, entropy, p_buf)
        if inv_temp != 1.0:
            dz.mul_(inv_temp)  # z = h W^T / T: both gradients carry the 1/T
        if low_precision:
            # the matmuls take operands of one dtype; they accumulate in fp32
            dz = low_buf[:c].copy_(dz)
        if need_hidden:
            _mm(dz, head, out=grad_hidden[start:end])  # [c, d]
        if need_weight:
            if low_precision:  # this chunk's fp32 product, then the fp32 sum over chunks
                grad_head += _mm(dz.T, h, out=chunk_grad)
            else:
                grad_head.addmm_(dz.T, h)  # [Vv, d] += [Vv, c] @ [c, d]
    if need_hidden:
        grad_hidden = grad_hidden.to(hidden.dtype)
    if need_weight:
        grad_weight = grad_weight.to(weight.dtype)
    return grad_hidden, grad_weight


def _logits_to_grad(dz, rows, lse, targets, grad_logp, grad_entropy, entropy, p_buf):
    """In place: the chunk's logits z [c, Vv] (rows of the M tokens) become dL/dz, from the
    gradients of the log-probs (and of the entropy) at those rows."""
    dz.sub_(lse[rows, None])  # log p
    g_logp = grad_logp[rows, None]  # [c, 1]
    if grad_entropy is None:
        dz.exp_().mul_(-g_logp)  # dL/dz = -g_logp p   (+ g_logp at the target, below)
    else:
        g_ent = grad_entropy[rows, None]  # [c, 1]
        p = torch.exp(dz, out=p_buf[: dz.shape[0]])
        # dL/dz = -p (g_logp + g_H (log p + H))   (+ g_logp at the target, below)
        torch.addcmul(-(g_logp + g_ent * entropy[rows, None]), dz, -g_ent, out=dz)
        dz.mul_(p)
    dz.scatter_add_(1, targets[rows, None], g_logp)


def _chunk_logits(h, head, inv_temp, out):
    """out [c, Vv] = h [c, d] @ head[Vv, d]^T * inv_temp, in the compute dtype."""
    _mm(h.to(head.dtype), head.T, out=out)
    if inv_temp != 1.0:
        out.mul_(inv_temp)
    return out


def _mm(a, b, out):
    """out = a @ b with float32 accumulation: bf16/fp16 operands (CUDA only) write the fp32 result
    directly."""
    if a.dtype == out.dtype:
        return torch.mm(a, b, out=out)
    return torch.mm(a, b, out_dtype=out.dtype, out=out)


def _head_operand(weight, valid_vocab):
    """The head rows the matmuls use: the weight itself, or (bf16/fp16 off CUDA) a float32 copy."""
    head = weight[:valid_vocab]
    if head.dtype in _LOW_PRECISION and not (head.is_cuda and _HAS_MM_OUT_DTYPE):
        head = head.float()
    return head


def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_inputs(hidden, weight, targets, temperature, valid_vocab):
    """Raise a ValueError naming the problem; return valid_vocab as an int."""
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 2:
        raise ValueError(f"hidden must be a 2-D tensor [tokens, d], got shape {_shape(hidden)}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D tensor [vocab, d], got shape {_shape(weight)}")
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden size {hidden.shape[1]} does not match weight's {weight.shape[1]} "
            f"(hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)})"
        )
    if not hidden.is_floating_point() or hidden.dtype != weight.dtype:
        raise ValueError(
            f"hidden and weight must share one floating dtype, got {hidden.dtype} and "
            f"{weight.dtype}"
        )
    if (
        not isinstance(targets, torch.Tensor)
        or targets.dim() != 1
        or targets.shape[0] != hidden.shape[0]
    ):
        raise ValueError(
            f"targets must be a 1-D tensor of length {hidden.shape[0]} (one per hidden row), "
            f"got shape {_shape(targets)}"
        )
    if targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must be int64 (or int32) token ids, got {targets.dtype}")
    if not (hidden.device == weight.device == targets.device):
        raise ValueError(
            f"hidden, weight and targets must be on one device, got "
            f"{hidden.device}, {weight.device}, {targets.device}"
        )
    if (
        not isinstance(temperature, (int, float))
        or isinstance(temperature, bool)
        or not 0 < temperature < float("inf")
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    V = weight.shape[0]
    if valid_vocab is None:
        valid_vocab = V
    if (
        isinstance(valid_vocab, bool)
        or not isinstance(valid_vocab, int)
        or not 1 <= valid_vocab <= V
    ):
        raise ValueError(
            f"valid_vocab must be an int in [1, {V}] (the weight's rows) or None, got "
            f"{valid_vocab!r}"
        )
    if targets.numel() > 0:
        low, high = torch.stack(torch.aminmax(targets)).tolist()  # one device sync
        if low < 0 or high >= valid_vocab:
            raise ValueError(
                f"targets must be ids in [0, {valid_vocab}) (valid_vocab), got values in [{low}, "
                f"{high}]"
            )
    return valid_vocab


def _shape(x):
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
