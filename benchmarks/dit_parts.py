"""Device probe (issue 4, session 11): where one steady-state DiT layer's time goes at 1408×768,
official sizes, bf16, halves compiled as ``--compile`` runs them: the part before attention
(norm, modulation, q/k/v, q/k norms, RoPE), the block choice, the block tables, the attention
kernel over the ring and the call's windows with the merge, the cache writes, and the part after
(output projection, cross-attention, FFN). Each part is timed alone, ``--repeat`` times back to
back per CUDA-event measurement so that host launch time hides as it does in the engine.

    python benchmarks/dit_parts.py [--height 768 --width 1408] [--attention-backend flash4] [--json OUT]
        [--try coordinate_descent compiled_tables]   # candidate changes, timed instead
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.attention.backends import resolve_backend  # noqa: E402
from flashvsr.attention.masks import pooled_windows  # noqa: E402
from flashvsr.attention.lcsa import AttentionPlan, KVPool, SlotTable, SparseCallAttention, choose_blocks  # noqa: E402
from flashvsr.bench import random_official_models  # noqa: E402
from flashvsr.config import TOKEN_PIXELS, WINDOW, SparseAttentionConfig  # noqa: E402
from flashvsr.models.dit import rope_cos_sin  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flex_options import time_ms  # noqa: E402

LAYERS = 30


def cpu_ms(fn, repeats: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) * 1e3 / repeats


def use_coordinate_descent() -> None:
    torch._inductor.config.coordinate_descent_tuning = True


def use_compiled_tables() -> None:
    import flashvsr.attention.backends as backends

    backends.selected_first = torch.compile(backends.selected_first, dynamic=False)


TRIALS = {"coordinate_descent": use_coordinate_descent, "compiled_tables": use_compiled_tables}
# session 11 also tried "rope_flip", RoPE as x·cos + swap(x)·(−sin, sin): kept, now flashvsr's apply_rope


def kernel_table(fn, repeat: int) -> str:
    """The GPU kernels of ``repeat`` back-to-back calls of ``fn``, by total time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeat):
            fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--attention-backend", default="auto")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", action="store_true", help="also list the kernels of the LCSA call and the halves")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run of the script itself (no timings worth reading)")
    ap.add_argument("--try", dest="trials", nargs="*", default=[], choices=sorted(TRIALS),
                    help="candidate changes to time instead of the current code")
    args = ap.parse_args()
    for name in args.trials:
        TRIALS[name]()
    dev, dtype = torch.device(args.device), torch.bfloat16
    models = random_official_models(1, "tiny", dev)
    dit = models.dit.to(dtype)
    block = dit.blocks[0]
    if dev.type == "cuda":
        block.compile_halves(dynamic=False)
    before, after = block.compiled_halves or (block.before_attention, block.after_attention)
    cond = dit.condition(models.context.to(dtype))
    th, tw = args.height // TOKEN_PIXELS, args.width // TOKEN_PIXELS
    att = SparseAttentionConfig()
    plan = AttentionPlan.build(th, tw, att.local_range, att.topk_ratio_for(args.height, args.width), att.kv_slices,
                               device=dev)  # fmt: skip
    frames = WINDOW[0]  # one time slice: a steady-state call's two latent frames
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(1, frames * th * tw, dit.cfg.dim, device=dev, generator=gen).to(dtype)
    cos, sin = (t.to(dev) for t in rope_cos_sin(torch.arange(frames), th, tw, dit.cfg.head_dim))
    q, k, v = before(x, cond.t_mod, (cos, sin))
    pool = KVPool.allocate(plan, 1, 1, dit.cfg.num_heads, dit.cfg.head_dim, dtype, dev)  # one layer's
    ring = pool.ring(0)
    for slot in range(plan.cache_capacity):  # a full ring of this call's keys, scaled a little differently
        t = plan.tokens_per_slice
        ring.write(slot * t, (slot + 1) * t, k * (0.9 + 0.1 * slot), v)
        ring.pooled[:, :, slot * plan.windows_per_slice : (slot + 1) * plan.windows_per_slice] = pooled_windows(k)
    slots = SlotTable(plan.cache_capacity, list(range(plan.cache_capacity)))
    cache = slots.plan(1, plan.kv_slices)
    kernel = resolve_backend(args.attention_backend, dev)
    chooser = torch.compile(choose_blocks, dynamic=False) if dev.type == "cuda" else choose_blocks
    attention = SparseCallAttention(plan, pool, cache, kernel, None, chooser)
    cached = attention.cached
    selected, _ = chooser(q, k, ring.pooled, cached, plan.local_mask, plan.windows_per_slice, plan.topk)
    if attention.joins:
        pool.spare().write(0, k.shape[1], k, v)  # as a call does before the kernel reads the spare
    parts = [attention.joined(0, selected)] if attention.joins else attention.parts(ring, k, v, selected)
    out = attention(0, q, k, v)

    cases = {
        "before attention (compiled)": lambda: before(x, cond.t_mod, (cos, sin)),
        "block choice (compiled)": lambda: chooser(q, k, ring.pooled, cached, plan.local_mask,
                                                   plan.windows_per_slice, plan.topk),  # fmt: skip
        "attention kernel (+ merge of two parts where the kernel takes no columns; tables included)": lambda: kernel(q, parts),
        "LCSA call (choice, tables, kernel, merge, cache writes)": lambda: attention(0, q, k, v),
        "after attention (compiled)": lambda: after(x, out, cond.t_mod, cond.text_kv[0]),
        "whole block": lambda: block(x, cond.t_mod, cond.text_kv[0], (cos, sin), attention, 0),
    }
    rows = []
    with torch.no_grad():
        for name, fn in cases.items():
            fn()
            timer = time_ms if dev.type == "cuda" else cpu_ms
            ms = timer(lambda: [fn() for _ in range(args.repeat)]) / args.repeat  # noqa: B023
            row = {"part": name, "ms_per_layer": round(ms, 4), "ms_per_8_frames": round(ms * LAYERS, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.profile:
            for name in ("LCSA call (choice, tables, kernel, merge, cache writes)", "before attention (compiled)",
                         "after attention (compiled)"):  # fmt: skip
                print(name, "\n" + kernel_table(cases[name], args.repeat))
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
