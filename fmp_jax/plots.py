"""PNG plots of a run: losses and remaining params/FLOPs against the budget."""

from __future__ import annotations

import os
from typing import Optional

from fmp_jax.metric_logging import read_metrics


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
  tune = [r for r in rows if r["stage"] == "finetune"]
  offset = search[-1]["step"] if search else 0

  fig, ax = plt.subplots(figsize=(7, 4))
  if search:
    ax.plot([r["step"] for r in search], [r["l1"] for r in search], label="search: L1")
  if tune:
    ax.plot([offset + r["step"] for r in tune], [r["loss"] for r in tune], label="finetune: L1")
  ax.set_xlabel("step")
  ax.set_ylabel("L1 loss")
  ax.set_yscale("log")
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title("Reconstruction loss")
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
