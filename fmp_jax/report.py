"""The driver's report: what a run produced (report.json, report.txt), one row per model.

Everything in `build_report` is deterministic; the measured latency (`measure_latency`) is
added beside it and kept out of the export.
"""

from __future__ import annotations

import dataclasses
import json
import os

from fmp_jax.arch import Arch
from fmp_jax.data import eval_set_names
from fmp_jax.profiling import format_latency  # noqa: F401  (the driver prints it too)
from fmp_jax.pruning.budget import Budget


def eval_settings(config) -> dict:
  """What decides the evaluate stage's numbers besides the model (a change re-scores)."""
  return {"eval_sets": list(eval_set_names(config.data)),
          "eval_max_images": int(config.data.eval_max_images),
          "data_dir": str(config.data.data_dir)}


def run_plan(report: dict) -> dict:
  """{"run_widths": ...} where a latency table chose the widths the model runs at, else {}:
  `inference.from_export` runs an export at its own plan."""
  return {"run_widths": report["run_widths"]} if report.get("run_widths") else {}


def search_detail(metrics: dict, budget: Budget) -> str:
  """The search's progress line after the loss: its l1, sizes and each tested quantity
  against the budget (names as in metrics.jsonl)."""
  now = {"total": metrics["remaining"], "channel": metrics["channel_remaining"],
         "weight": metrics["weight_remaining"]}
  detail = " ".join(f"{n} {100 * now[n]:.1f}% (budget {100 * t:.1f}%)"
                    for n, t in budget.targets().items())
  if "target_now" in metrics:
    detail += f", scheduled now {100 * metrics['target_now']:.1f}%"
  return (f" l1 {metrics['l1']:.4f} | params {100 * metrics['params_ratio']:.1f}% flops "
          f"{100 * metrics['flops_ratio']:.1f}% | {budget.metric} {detail}")


def build_report(arch: Arch, budget: Budget, search_info: dict, finetune_steps: int,
                 eval_results: dict) -> dict:
  """The run's outcome; everything in it is deterministic (timings are kept apart)."""
  r = search_info["report"]
  return {
      "model": f"{arch.model.upper()}-{arch.blocks}-{arch.channels} x{arch.scale}",
      "budget": dataclasses.asdict(budget),
      "dense": {"params": r["dense_params"], "flops": r["dense_flops"]},
      "pruned": {"params": r["params"], "flops": r["flops"], "widths": r["widths"],
                 **({"run_widths": r["run_widths"]} if "run_widths" in r else {})},
      "params_ratio": r["params_ratio"], "flops_ratio": r["flops_ratio"],
      "split": {m: {"channel_pruned_ratio": r[f"{m}_channel_pruned_ratio"],
                    "weight_pruned_ratio": r[f"{m}_weight_pruned_ratio"]}
                for m in ("params", "flops")},
      "executed_macs": r["executed_macs"], "executed_macs_ratio": r["executed_macs_ratio"],
      **({"latency_predicted": {"ratio": r["latency_ratio"], "seconds": r["latency_seconds"],
                                "dense_seconds": r["dense_latency_seconds"],
                                "lr_hw": r["latency_lr_hw"]}} if "latency_ratio" in r else {}),
      "search_steps": search_info["steps"], "finetune_steps": int(finetune_steps),
      "eval": {name: res["summary"] for name, res in eval_results.items()},
  }


def measure_latency(model, repeats: int) -> dict:
  """The exported fine-tuned `model` and its dense backbone, timed interleaved over `repeats`
  rounds as `Upscaler` runs them here (`profiling.time_against_dense`: medians, the spread,
  and whether the machine was too busy for the figure to mean anything). A timing: kept out
  of the export, recorded once per run."""
  from fmp_jax import profiling
  from fmp_jax.models import bake_masks
  from fmp_jax.pruning import complexity
  from fmp_jax.pruning.latency import device_info
  lr_hw = complexity.lr_size_for(model.arch.scale)
  timing = profiling.time_against_dense(bake_masks(model.params, model.masks), model.arch,
                                        lr_hw, repeats, run_widths=model.meta.get("run_widths"))
  return dict(timing, repeats=repeats, device=device_info()["kind"])


def format_family(rows: list[dict]) -> list[str]:
  """One line per family member: its size, cost and scores."""
  sets = list(rows[0]["eval"])
  lat = lambda r: (r.get("latency_measured") or r.get("latency_predicted") or {}).get("ratio")
  head = (f"{'member':<12}{'params':>9}{'FLOPs':>8}{'exec.':>8}{'latency':>9}{'by ch.':>8}"
          f"{'by wt.':>8}{'steps':>7}" + "".join(f"{s[:10]:>12}" for s in sets)
          + f"{'bicubic':>9}")
  lines = ["family (one search; % of the dense model, PSNR in dB):", head]
  for r in rows:
    split = r["split"]["flops"]
    la = lat(r)
    lines.append(f"{r.get('member', ''):<12}{100 * r['params_ratio']:>8.1f}%"
                 f"{100 * r['flops_ratio']:>7.1f}%{100 * r['executed_macs_ratio']:>7.1f}%"
                 f"{('-' if la is None else f'{100 * la:.1f}%'):>9}"
                 f"{100 * split['channel_pruned_ratio']:>7.1f}%"
                 f"{100 * split['weight_pruned_ratio']:>7.1f}%{r['search_steps']:>7}"
                 + "".join(f"{r['eval'][s]['psnr']:>12.2f}" for s in sets)
                 + f"{r['eval'][sets[0]]['bicubic_psnr']:>9.2f}")
  return lines


def format_report(report: dict) -> str:
  d, p = report["dense"], report["pruned"]
  lines = [f"FMP result: {report['model']}, budget keep {100 * report['budget']['keep']:.2f} % of "
           f"{report['budget']['metric']} (criterion {report['budget']['criterion']})", "",
           f"{'':<10}{'dense':>16}{'pruned':>16}{'remaining':>11}",
           f"{'params':<10}{d['params']:>16,}{p['params']:>16,}{100 * report['params_ratio']:>10.2f}%",
           f"{'FLOPs':<10}{d['flops'] / 1e9:>15.3f}G{p['flops'] / 1e9:>15.3f}G"
           f"{100 * report['flops_ratio']:>10.2f}%",
           f"{'exec. MACs':<10}{d['flops'] / 1e9:>15.3f}G{report['executed_macs'] / 1e9:>15.3f}G"
           f"{100 * report['executed_macs_ratio']:>10.2f}%"]
  for key, label in (("latency_predicted", "latency (table)"), ("latency_measured", "latency")):
    t = report.get(key)
    if t:
      lines.append(f"{label:<10}{1e3 * t['dense_seconds']:>14.1f}ms{1e3 * t['seconds']:>14.1f}ms"
                   f"{100 * t['ratio']:>10.2f}%   at LR {t['lr_hw'][0]}x{t['lr_hw'][1]}")
      if "rounds" in t:   # measured: how far to trust it
        lines.append(f"{'':<10}pruned / dense, median of interleaved rounds: "
                     f"{format_latency(t)}")
  lines += ["FLOPs count unmasked weights; executed MACs are every weight of the kept widths "
            "(weight zeros save no time).", "",
           f"{'removed by':<12}{'channels':>10}{'weights':>10}"]
  for m in ("params", "flops"):
    s = report["split"][m]
    lines.append(f"{m:<12}{100 * s['channel_pruned_ratio']:>9.2f}%{100 * s['weight_pruned_ratio']:>9.2f}%")
  lines += ["", f"search steps {report['search_steps']}, finetune steps {report['finetune_steps']}",
            "", f"{'eval set':<12}{'images':>7}{'PSNR (dB)':>11}{'SSIM':>8}"
            f"{'bicubic PSNR':>14}{'SSIM':>8}"]
  for name, s in report["eval"].items():
    lines.append(f"{name:<12}{s['images']:>7}{s['psnr']:>11.2f}{s['ssim']:>8.4f}"
                 f"{s['bicubic_psnr']:>14.2f}{s['bicubic_ssim']:>8.4f}")
  if report.get("family"):
    lines += [""] + format_family(report["family"])
  return "\n".join(lines)


def write(workdir: str, final: dict, book, budget: Budget, rows: list, baselines: str) -> None:
  """report.json (with each stage's seconds), report.txt, the plots; prints the report."""
  from fmp_jax.plots import plot_family, plot_run
  seconds = {s: v["seconds"] for s, v in book.done.items() if "seconds" in v}
  with open(os.path.join(workdir, "report.json"), "w") as f:
    json.dump(dict(final, stage_seconds=seconds), f, indent=1)
  text = format_report(final)
  with open(os.path.join(workdir, "report.txt"), "w") as f:
    f.write(text + "\n")
  plots = plot_run(workdir, budget.targets().get("total"), budget.metric)
  if len(rows) > 1:
    plots += plot_family(workdir, rows, baselines)
  print("\n" + text + "\n", flush=True)
  print(f"export: {os.path.join(workdir, 'export', 'model.msgpack')}; plots: "
        f"{', '.join(plots)}", flush=True)
