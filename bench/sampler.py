"""Benchmark: passk's sampler on a Hugging Face model vs transformers `generate` vs no KV cache.

    python bench/sampler.py                      # CPU, a small random Qwen2-shaped model
    python bench/sampler.py --device cuda --dtype bfloat16 --layers 24 --hidden 896 --vocab 151936
    --prompts 32 --n 8

One random Qwen2-shaped model (no download) and one batch of B prompts of different lengths,
n responses each, `--new` tokens per response (EOS is masked, so every row runs to the end):
- passk dynamic / static / compiled: rollout.generate on model.HFPolicy (prefill each prompt once,
  copy its cache to its n rows; DynamicCache, preallocated StaticCache, or static + torch.compile'd
  step: compile time is excluded by a warm-up run, and reported);
- transformers generate: the same left-padded batch with each prompt repeated n times (generate's
  default DynamicCache, greedy or sampling with the same top-p);
- no cache: every step recomputes the whole sequence, the baseline a KV cache exists to beat.
Greedy and sampled decoding are timed separately; greedy tokens of passk and generate are compared.
Each method runs `--repeats` times after a warm-up and reports its fastest run (the machine may be
shared). Ratios are tokens per second against `generate`, measured in the same process.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# noqa: E402, F401  (OpenMP threads that sleep when the cores are shared: before torch)
import threads  # noqa: E402, F401  (before torch: OpenMP threads that step aside)

import torch  # noqa: E402
import transformers  # noqa: E402

import hf_policy  # noqa: E402
from rollout import generate, left_pad  # noqa: E402


def build_model(args, device):
    config = transformers.Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate or 3 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads or max(1, args.heads // 4),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).to(device).eval()
    model.generation_config.eos_token_id = None  # every row decodes --new tokens
    model.generation_config.pad_token_id = 0
    return model


def no_cache_decode(model, ids, mask, new_tokens, valid_vocab):
    """Greedy, recomputing the full left-padded sequence at every step."""
    for _ in range(new_tokens):
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=False,
            logits_to_keep=1,
        ).logits[:, -1]  # [R, V]
        logits[:, valid_vocab:] = float("-inf")
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return ids


def fastest(run, repeats, sync):
    """(best seconds, warm-up seconds, output) from one warm-up run and `repeats` timed runs."""
    start = time.perf_counter()
    output = run()
    sync()
    warmup, best = time.perf_counter() - start, float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        output = run()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, warmup, output


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype", default="float32", help="compute dtype of passk's policy (generate: same)"
    )
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument(
        "--kv-heads", type=int, default=0, help="key/value heads (0: heads // 4; Qwen2.5-0.5B: 2)"
    )
    parser.add_argument(
        "--intermediate", type=int, default=0, help="MLP width (0: 3 x hidden; Qwen2.5-0.5B: 4864)"
    )
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--prompts", type=int, default=8, help="B distinct prompts")
    parser.add_argument("--n", type=int, default=4, help="responses per prompt")
    parser.add_argument("--new", type=int, default=64, help="new tokens per response")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--skip", default="", help="comma-separated methods to leave out (e.g. compiled,no-cache)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = build_model(args, device)
    # a padded embedding, as Qwen's: the last 64 ids are never sampled
    valid_vocab = args.vocab - 64
    generator = torch.Generator().manual_seed(1)
    prompts = [
        torch.randint(1, valid_vocab, (int(length),), generator=generator).tolist()
        for length in torch.linspace(16, 64, args.prompts)
    ]
    rows = args.prompts * args.n
    repeated = [p for p in prompts for _ in range(args.n)]
    ids, mask = left_pad(repeated, 0, device)
    suppress = list(range(valid_vocab, args.vocab))
    compute = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    policies = {
        mode: hf_policy.HFPolicy(model, dtype=args.dtype, decode=mode)
        for mode in hf_policy.HF_DECODE_MODES
    }

    def passk(mode, temperature):
        return lambda: (
            generate(
                policies[mode],
                prompts,
                n=args.n,
                max_new_tokens=args.new,
                eos_ids=[args.vocab - 1],
                pad_id=0,
                valid_vocab=valid_vocab,
                seeds=list(range(args.prompts)),
                temperature=temperature,
                top_p=1.0 if temperature == 0 else 0.95,
            ).tokens
        )

    def hf_generate(sample):
        def run():
            with (
                torch.no_grad(),
                torch.autocast(device.type, dtype=compute, enabled=compute != torch.float32),
            ):
                return model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=args.new,
                    min_new_tokens=args.new,
                    do_sample=sample,
                    top_p=0.95 if sample else None,
                    top_k=None,
                    temperature=1.0 if sample else None,
                    suppress_tokens=suppress,
                )[:, ids.shape[1] :]

        return run

    methods = {  # name: (decoding, callable)
        "transformers generate": ("greedy", hf_generate(False)),
        "passk dynamic": ("greedy", passk("dynamic", 0.0)),
        "passk static": ("greedy", passk("static", 0.0)),
        "passk compiled": ("greedy", passk("compiled", 0.0)),
        "no cache": ("greedy", lambda: no_cache_decode(model, ids, mask, args.new, valid_vocab)),
        "transformers generate (sampling)": ("top-p 0.95", hf_generate(True)),
        "passk dynamic (sampling)": ("top-p 0.95", passk("dynamic", 1.0)),
    }
    skipped = {s.strip() for s in args.skip.split(",") if s.strip()}
    print(
        f"device {args.device}, {torch.get_num_threads()} threads, compute {args.dtype}; "
        "Qwen2-shaped: "
        f"{args.layers} layers, hidden {args.hidden}, {args.heads} heads "
        f"({args.kv_heads or max(1, args.heads // 4)} for keys and values), "
        f"vocabulary {args.vocab}; "
        f"{args.prompts} prompts (16-64 tokens) x {args.n} responses x {args.new} new tokens = "
        f"{rows} rows"
    )
    results, outputs = {}, {}
    for name, (decoding, run) in methods.items():
        if any(s in name for s in skipped):
            continue
        with torch.no_grad():
            seconds, warmup, outputs[name] = fastest(run, args.repeats, sync)
        results[name] = (decoding, seconds, warmup)
    baselines = {
        "greedy": results.get("transformers generate"),
        "top-p 0.95": results.get("transformers generate (sampling)"),
    }
    print("\n| method | decoding | tokens/s | vs generate | first run (s) |\n|---|---|---|---|---|")
    for name, (decoding, seconds, warmup) in results.items():
        baseline = baselines[decoding]
        ratio = f"{baseline[1] / seconds:.2f}x" if baseline else "-"
        print(
            f"| {name} | {decoding} | {rows * args.new / seconds:,.0f} | {ratio} | {warmup:.2f} |"
        )
    reference = outputs.get("transformers generate")
    for name in ("passk dynamic", "passk static", "passk compiled", "no cache"):
        if reference is not None and name in outputs:
            tokens = outputs[name][:, -args.new :] if name == "no cache" else outputs[name]
            print(
                f"greedy tokens of {name} equal generate's: "
                f"{torch.equal(tokens.cpu(), reference.cpu())}"
            )


if __name__ == "__main__":
    main()
