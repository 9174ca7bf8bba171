"""PNG plots of a run: losses and remaining params/FLOPs against the budget."""

from __future__ import annotations

import os
from typing import Optional

from fmp_jax.metric_logging import read_metrics


def smooth(values: list, window: int = 0) -> list:
  """A centred moving average (window: about a tenth of the points, odd, at least 1); the
  ends average what is there, so the curve spans every step."""
  import numpy as np
  n = len(values)
  window = window or max(1, (n // 10) | 1)
  half = window // 2
  v = np.asarray(values, float)
  return [float(v[max(0, i - half):i + half + 1].mean()) for i in range(n)]


def plot_run(workdir: str, budget_keep: Optional[float] = None, metric: str = "flops") -> list[str]:
  """Writes plots/loss.png and plots/remaining.png from metrics.jsonl; returns their paths."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = read_metrics(workdir)
  if not rows:
    return []
  out_dir = os.path.join(workdir, "plots")
  os.makedirs(out_dir, exist_ok=True)
  search = [r for r in rows if r["stage"] == "search"]
  tunes = sorted({r["stage"] for r in rows if r["stage"].startswith("finetune")})

  # One panel per stage, each on its own step axis: the search's loss (l1 + the budget
  # term) and reconstruction l1, then each fine-tune's l1 loss; raw values faint, a
  # moving average on top.
  panels = ([("search", search, (("l1", "l1 (reconstruction)"), ("loss", "loss")))] if search
            else [])
  panels += [(stage.replace("/", " "), [r for r in rows if r["stage"] == stage],
              (("loss", "loss (l1)"),)) for stage in tunes]
  fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.5 * max(len(panels), 1), 4),
                           squeeze=False)
  for ax, (title, stage_rows, keys) in zip(axes[0], panels):
    steps = [r["step"] for r in stage_rows]
    for k, (key, label) in enumerate(keys):
      values = [r[key] for r in stage_rows if key in r]
      if len(values) != len(steps):
        continue
      color = f"C{k}"
      ax.plot(steps, values, color=color, alpha=0.25, lw=1)
      ax.plot(steps, smooth(values), color=color, lw=2, label=f"{label}, smoothed")
    ax.set_xlabel(f"{title} step")
    ax.set_ylabel("L1 loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
  fig.suptitle("Reconstruction loss per stage (faint: every logged step)")
  loss_path = os.path.join(out_dir, "loss.png")
  fig.tight_layout()
  fig.savefig(loss_path, dpi=110)
  plt.close(fig)

  paths = [loss_path]
  if search:
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in search]
    ax.plot(steps, [100 * r["params_ratio"] for r in search], label="params remaining")
    ax.plot(steps, [100 * r["flops_ratio"] for r in search], label="FLOPs remaining")
    if all("channels_ratio" in r for r in search):
      ax.plot(steps, [100 * r["channels_ratio"] for r in search], ls=":",
              label="prunable channels kept")
    if all("target_now" in r for r in search):
      ax.plot(steps, [100 * r["target_now"] for r in search], color="0.6", lw=1,
              label=f"scheduled target ({metric})")
    if budget_keep is not None:
      ax.axhline(100 * budget_keep, color="k", ls="--", lw=1, label=f"budget ({metric})")
    ax.set_xlabel("search step")
    ax.set_ylabel("% of the dense model")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("FMP search: remaining complexity")
    path = os.path.join(out_dir, "remaining.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
  return paths


def plot_family(workdir: str, rows: list[dict], baselines: str = "") -> list[str]:
  """plots/family.png: PSNR (first eval set) of every family member against its counted FLOPs,
  params and (where known) latency, beside the baselines of an ablation JSON (`baselines`:
  bench/ablation.py --json or bench/family.py --json, its runs averaged per arm and budget)."""
  import json

  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  if not rows or not rows[0].get("eval"):
    return []
  eval_set = next(iter(rows[0]["eval"]))
  latency = lambda r: (r.get("latency_measured") or r.get("latency_predicted") or {}).get("ratio")
  axes_of = [("FLOPs (counted)", lambda r: r["flops_ratio"]),
             ("params", lambda r: r["params_ratio"])]
  if all(latency(r) is not None for r in rows):
    axes_of.append(("latency", latency))
  others = {}
  if baselines:
    with open(baselines) as f:
      runs = json.load(f).get("runs", [])
    for r in runs:
      key = (r["arm"], round(r.get("budget_keep", r["flops_ratio"]), 3))
      others.setdefault(key, []).append(r)
  fig, axs = plt.subplots(1, len(axes_of), figsize=(4.5 * len(axes_of), 4), squeeze=False)
  for ax, (label, x_of) in zip(axs[0], axes_of):
    xs = [100 * x_of(r) for r in rows]
    ax.plot(xs, [r["eval"][eval_set]["psnr"] for r in rows], "o-", color="C3", lw=2,
            label="FMP family (one search)")
    for r, x in zip(rows, xs):
      ax.annotate(r.get("member", ""), (x, r["eval"][eval_set]["psnr"]), fontsize=7,
                  textcoords="offset points", xytext=(3, 3))
    arms = sorted({a for a, _ in others})
    for i, arm in enumerate(arms):
      pts = []
      for (a, _), rs in sorted(others.items()):
        if a != arm:
          continue
        key = {"FLOPs (counted)": "flops_ratio", "params": "params_ratio",
               "latency": "latency_measured_ratio"}[label]
        vals = [q.get(key) for q in rs]
        if any(v is None for v in vals):
          continue
        pts.append((100 * sum(vals) / len(vals), sum(q["psnr"] for q in rs) / len(rs)))
      if pts:
        ax.plot(*zip(*sorted(pts)), marker="s", ls="--", color=f"C{i}", label=arm)
    ax.set_xlabel(f"{label}, % of dense")
    ax.set_ylabel(f"PSNR on {eval_set} (dB)")
    ax.grid(alpha=0.3)
  axs[0][0].legend(fontsize=8)
  fig.suptitle("FMP: one search, a family of models")
  fig.tight_layout()
  path = os.path.join(workdir, "plots", "family.png")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return [path]
