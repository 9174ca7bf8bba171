"""Pruned vs dense inference latency, side by side, against the counted FLOPs ratio.

  python bench/inference.py --export model.msgpack [--batch 4] [--repeats 3] [--dense own]
  python bench/inference.py            # first runs a real FMP search (ESRB-6-256 x2), ~2-5 min

For the exported (pruned) model and a dense reference (random weights, built
by shape: latency does not depend on the values), both jit-compiled with
`fmp_jax.inference.Upscaler` (whole image, no tiling), it times one
1280x720-output image (LR 360x640 at x2) and a batch of `--batch`,
interleaving dense and pruned runs so both see the same machine load, and
prints medians and, side by side, the counted FLOPs ratio, the executed MACs
ratio and the latency ratio. The dense reference is the export's own
backbone at full widths (`--dense own`, the default: same model, blocks,
channels, scale and ESA width, `exported.arch.dense()`), so every ratio is
the pruned model against the model it was pruned from; `--dense esrb-6-256`
takes the dense ESRB-6-256 of the export's scale instead (the paper's
backbone), e.g. to set a small model against it. The output names the dense
model it compared with. Both models
run each conv on the path `fmp_jax.inference.conv_path` picks for its shape
(the Upscaler default; --plain adds both models with every conv an XLA
convolution, as `fmp_jax.apply` runs them) and --channel-multiples sets the
pruned variants' width padding.

On Linux the bench re-executes itself with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (unless --no-hugepages or the variable
is already set): glibc then backs XLA's large per-call buffers with
transparent huge pages. Without it, every call of the pruned model at
360x640 takes ~150,000 page faults (~0.25 s of ~2.8 s on a 2-core CPU) as it
touches fresh memory; both models run under the same setting.

FLOPs follow the project convention (FMP.md section 2): FLOPs = MACs of conv
weights; "counted" MACs skip masked (zero) weights, "executed" MACs are those
of the pruned widths with every weight computed (what a dense conv kernel
really does: unstructured zeros save no time). Throughput is printed as
GMAC/s = counted MACs / second (multiply by 2 for GFLOP/s in the
multiply+add convention).

Without --export, a real FMP search prunes a fresh ESRB-6-256 to `--keep` of
its params (criterion Total) on 24x24 LR photo patches, batch 2, with the
search's default dynamics on a `--pace`-step schedule, and saves the result to
`--save` (default workdir_bench/fmp_esrb6x256_x{s}.msgpack).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --dense: which dense model the export's ratios are taken against.
DENSE_CHOICES = {
    "own": lambda arch: arch.dense(),
    "esrb-6-256": lambda arch: type(arch)(model="esrb", blocks=6, channels=256, scale=arch.scale,
                                          esa_channels=arch.esa_channels,
                                          rgb_range=arch.rgb_range),
}


def arch_label(arch):
  """E.g. "ESRB-6-256 x2 (ESA 16)" (ESRB's ESA width matters to its cost too)."""
  label = f"{arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale}"
  return label + (f" (ESA {arch.esa_channels})" if "block_0.esa" in arch.groups() else "")


def parse_args():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--export", help="pruned export to benchmark (default: prune one first)")
  p.add_argument("--scale", type=int, default=2, help="scale when pruning here (2, 3, 4)")
  p.add_argument("--batch", type=int, default=4, help="images per batched call (0: skip)")
  p.add_argument("--repeats", type=int, default=3, help="timed runs per model and shape")
  p.add_argument("--dense", choices=sorted(DENSE_CHOICES), default="own",
                 help="dense reference: own = the export's backbone at full widths "
                      "(default); esrb-6-256 = the dense ESRB-6-256 of the export's scale")
  p.add_argument("--channel-multiples", default=None,
                 help="comma list: time the pruned model with widths zero-padded to these "
                      "multiples (1 = as exported); default: 1 and the Upscaler's default for "
                      "this backend (8 on CPU, 32 on GPU)")
  p.add_argument("--plain", action="store_true",
                 help="also time dense and pruned with every conv an XLA convolution "
                      "(Upscaler(fast_paths=False, channel_multiple=1)), as fmp_jax.apply runs")
  p.add_argument("--no-hugepages", action="store_true",
                 help="do not re-execute with GLIBC_TUNABLES=glibc.malloc.hugetlb=1")
  p.add_argument("--xla-flags", default=None, help="extra XLA_FLAGS for this process")
  p.add_argument("--json", action="store_true", help="print one JSON object at the end")
  g = p.add_argument_group("pruning here (no --export)")
  g.add_argument("--keep", type=float, default=0.085, help="kept fraction of params")
  g.add_argument("--steps", type=int, default=600, help="most search steps")
  g.add_argument("--pace", type=int, default=400, help="search.pace_steps")
  g.add_argument("--save", default=None, help="where to write the pruned export")
  return p.parse_args()


def prune_here(args):
  """A real FMP search on a fresh dense ESRB-6-256; returns the saved export's path."""
  from fmp_jax.data import bundled_patches
  import fmp_jax

  arch = fmp_jax.Arch(scale=args.scale)
  params = fmp_jax.init_params(arch, seed=0)

  # The search's defaults; the schedule reaches the budget at step --pace.
  config = dict(lr=1e-4, pace_steps=args.pace)
  t0 = time.perf_counter()
  last = {}

  def on_step(step, m):
    last.update(m)
    if step % 25 == 0:
      print(f"  search step {step}: L1 {m['l1']:.4f}, params kept {100 * m['params_ratio']:.2f} %",
            flush=True)

  print(f"pruning ESRB-6-256 x{args.scale} to {100 * args.keep:.1f} % params (FMP search, "
        f"config {config}) ...", flush=True)
  result = fmp_jax.prune(params, fmp_jax.Budget(args.keep, metric="params"), arch=arch,
                         data=bundled_patches(args.scale, 24, 2), steps=args.steps, config=config, on_step=on_step)
  path = args.save or os.path.join("workdir_bench", f"fmp_esrb6x256_x{args.scale}.msgpack")
  meta = {k: v for k, v in result.report.items()}
  meta.update(search_config=config, search_seconds=time.perf_counter() - t0,
              final_l1=last.get("l1"))
  fmp_jax.save_export(path, result.params, result.arch, result.masks, meta=meta)
  print(f"  converged={result.report['converged']} in {result.report['steps']} steps "
        f"({time.perf_counter() - t0:.0f} s), final L1 {last.get('l1', float('nan')):.4f}; "
        f"widths {dict(result.arch.widths)}; saved {path}", flush=True)
  return path


def bytes_accessed(executable):
  """XLA's cost-analysis estimate of the bytes one call reads and writes (None if unknown)."""
  try:
    analysis = executable.cost_analysis()
  except Exception:  # not every backend/version implements it
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  value = (analysis or {}).get("bytes accessed")
  return float(value) if value is not None else None


def main():
  args = parse_args()
  if not args.no_hugepages:
    from fmp_jax.profiling import reexec_with_hugepages
    reexec_with_hugepages()
  if args.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
  import numpy as np
  import jax
  import fmp_jax
  from fmp_jax import inference, profiling
  from fmp_jax.pruning import complexity

  path = args.export or prune_here(args)
  exported = fmp_jax.load(path)
  arch = exported.arch
  dense_arch = DENSE_CHOICES[args.dense](arch)
  dense_name = f"dense {arch_label(dense_arch)}"
  lr_hw = complexity.lr_size_for(arch.scale)
  counted = complexity.count(arch, weight_masks=exported.masks, lr_hw=lr_hw).flops
  executed = complexity.count(arch, lr_hw=lr_hw).flops
  dense_flops = complexity.count(dense_arch, lr_hw=lr_hw).flops
  multiples = ([int(m) for m in args.channel_multiples.split(",")] if args.channel_multiples
               else sorted({1, inference.default_channel_multiple()}))

  dense_params = fmp_jax.init_params(dense_arch, seed=0)
  models = {"dense": inference.Upscaler(dense_params, dense_arch, tile=None)}
  for m in multiples:
    name = "pruned" if m == 1 else f"pruned_pad{m}"
    models[name] = inference.from_export(exported, tile=None, channel_multiple=m)
    if m > 1 and dict(models[name].arch.widths or {}) == dict(arch.widths or {}):
      del models[name]  # already a multiple: same model
  if args.plain:
    models["dense_plain"] = inference.Upscaler(dense_params, dense_arch, tile=None,
                                               fast_paths=False)
    models["pruned_plain"] = inference.from_export(exported, tile=None, fast_paths=False,
                                                   channel_multiple=1)
  # Each variant's latency ratio is taken against the dense model on the same paths.
  reference = {name: "dense_plain" if name.endswith("plain") else "dense" for name in models}
  widths = {name: dict(up.arch.widths or {}) for name, up in models.items()}
  exec_flops = {name: complexity.count(up.arch, lr_hw=lr_hw).flops for name, up in models.items()}

  print(f"backend {jax.default_backend()} ({jax.device_count()} device(s): "
        f"{jax.devices()[0].device_kind}; {os.cpu_count()} CPUs), "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
  print(f"export {path}: {arch_label(arch)}, widths {dict(arch.widths or {})}")
  print(f"compared with: {dense_name}, --dense {args.dense}")
  for name in models:
    if name.startswith("pruned_pad"):
      print(f"  {name}: widths {widths[name]}")
  print(f"LR {lr_hw[0]}x{lr_hw[1]} -> HR {lr_hw[0] * arch.scale}x{lr_hw[1] * arch.scale}; "
        f"repeats {args.repeats}; batch {args.batch}")

  rng = np.random.default_rng(0)
  shapes = {"single": (1, *lr_hw, 3)}
  if args.batch > 0:
    shapes[f"batch{args.batch}"] = (args.batch, *lr_hw, 3)
  results, timings = {}, {}
  for label, shape in shapes.items():
    x = jax.device_put(rng.random(shape, dtype=np.float32) * arch.rgb_range)
    compile_s, moved = {}, {}
    for name, up in models.items():
      t0 = time.perf_counter()
      calls = [bytes_accessed(up.executable(s)) for s in up.call_shapes(shape)]
      moved[name] = None if None in calls else sum(calls)
      compile_s[name] = time.perf_counter() - t0
    # Interleaved rounds (every model sees the same load drift), one warm-up call each.
    timing = profiling.time_interleaved(
        {name: ((lambda up=up: up.forward(x)), ()) for name, up in models.items()},
        rounds=args.repeats)
    times = timing.rounds
    for name in models:
      med = timing.seconds(name)
      flops_name = dense_flops if name.startswith("dense") else counted
      results.setdefault(label, {})[name] = {
          "median_s": med, "per_image_s": med / shape[0], "runs_s": times[name],
          "compile_s": compile_s[name],
          "counted_gmacs": shape[0] * flops_name / med / 1e9,
          "executed_gmacs": shape[0] * exec_flops[name] / med / 1e9,
          "xla_bytes_accessed": moved[name],
          "achieved_gb_s": None if moved[name] is None else moved[name] / med / 1e9}
    timings[label] = timing

  flops_ratio = counted / dense_flops
  exec_ratio = executed / dense_flops
  print(f"\ncounted FLOPs (MACs) per image: {dense_name} {dense_flops / 1e9:.2f} G, pruned "
        f"{counted / 1e9:.2f} G -> FLOPs ratio {flops_ratio:.4f}; executed by the pruned "
        f"widths (zeros included) {executed / 1e9:.2f} G -> {exec_ratio:.4f}")
  print(f"target: latency ratio <= 1.5 x FLOPs ratio = {1.5 * flops_ratio:.4f}; ratios are "
        f"against {dense_name} on the same conv paths (XLA convolutions for *_plain)\n")
  print("GMAC/s: counted MACs per second; exec: MACs the kernels run, zeros and padding "
        "included; GB: bytes read+written per call by XLA's cost analysis, GB/s that over the "
        "median time (a memory-bound model approaches the device's bandwidth); FLOPs / exec / "
        "lat. ratio: counted MACs, executed MACs and median latency over the dense model's\n")
  header = (f"{'shape':<8} {'model':<12} {'median s':>9} {'s/image':>8} {'GMAC/s':>8} "
            f"{'exec GMAC/s':>11} {'GB':>7} {'GB/s':>7} {'FLOPs ratio':>11} {'exec ratio':>10} "
            f"{'lat. ratio':>10} {'lat./FLOPs':>10}")
  print(header)
  summary = {}
  for label, by_model in results.items():
    for name, r in by_model.items():
      is_dense = name.startswith("dense")
      ratio = timings[label].ratio(name, reference[name])   # median of per-round ratios
      busy = timings[label].unreliable(name, reference[name])
      rel = ratio / flops_ratio
      # A dense row has no masks and full widths: counted = executed = dense_flops.
      row_flops_ratio = 1.0 if is_dense else flops_ratio
      row_exec_ratio = exec_flops[name] / dense_flops
      r.update(latency_ratio=ratio, latency_over_flops_ratio=rel, reference=reference[name],
               flops_ratio=row_flops_ratio, executed_ratio=row_exec_ratio, unreliable=busy)
      shown_rel = "" if is_dense else f"{rel:.2f}x"
      gb = "?" if r["xla_bytes_accessed"] is None else f"{r['xla_bytes_accessed'] / 1e9:.1f}"
      gbs = "?" if r["achieved_gb_s"] is None else f"{r['achieved_gb_s']:.0f}"
      print(f"{label:<8} {name:<12} {r['median_s']:>9.3f} {r['per_image_s']:>8.3f} "
            f"{r['counted_gmacs']:>8.1f} {r['executed_gmacs']:>11.1f} {gb:>7} {gbs:>7} "
            f"{row_flops_ratio:>11.4f} {row_exec_ratio:>10.4f} {ratio:>10.4f} {shown_rel:>10}"
            + ("  unreliable: machine busy" if busy and not is_dense else ""))
      if not is_dense:
        summary.setdefault(label, {})[name] = rel
  print(f"(dense: {arch_label(dense_arch)} at full widths)\n")
  for label, rels in summary.items():
    name = min(rels, key=rels.get)
    best = rels[name]
    verdict = "MET" if best <= 1.5 else f"MISSED by {best / 1.5:.2f}x"
    print(f"{label}: best latency ratio / FLOPs ratio = {best:.2f} ({name} vs {dense_name}; "
          f"target <= 1.5): {verdict}")
  if args.json:
    print(json.dumps({"export": path, "widths": widths, "lr_hw": lr_hw,
                      "dense": {"choice": args.dense, "name": arch_label(dense_arch),
                                "arch": dense_arch.to_dict()},
                      "dense_flops": dense_flops, "counted_flops": counted,
                      "executed_flops": executed, "flops_ratio": flops_ratio,
                      "executed_ratio": exec_ratio, "results": results,
                      "xla_flags": os.environ.get("XLA_FLAGS", ""),
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                      "device": jax.devices()[0].device_kind}))


if __name__ == "__main__":
  main()
