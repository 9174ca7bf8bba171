"""One search, a family of models, against a separate search per budget and the baselines.

  python bench/family.py                                  # ESRB-3-32 x2, keeps 0.5,0.3,0.15, 3 seeds
  python bench/family.py --keeps 0.5,0.3 --seeds 1 --json fam.json --plot fam.png
  python bench/family.py --first-seed 1 --seeds 2 --include fam.json   # add seeds 1, 2 to fam.json's

Arms (bench/ablation.py's recipe, data and caching; every model gets the same number of
fine-tune steps F, by default T - S of the ablation = 2990):

  fmp_family   one FMP search (criterion Total, FLOPs) to the smallest keep that takes a
               model at every keep on its way down (search.family); each member fine-tuned
  fmp_total    a separate FMP search to each keep, then fine-tuned
  uniform      ESRB at the widest uniform width within each keep, S dense steps + F
  l1norm       S dense steps, L1-norm channels at the uniform widths, + F

Prints, per keep, mean +- std PSNR over the seeds, counted FLOPs, executed MACs and the
measured latency of every arm, the family's paired PSNR difference to the separate search,
the total gradient steps of the family and of the separate searches, and writes a figure.
The JSON (--json) can be given to the driver as --config.report.baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import ablation  # noqa: E402  (bench/ablation.py: recipe, runs, cache, timing)

ARMS = ("fmp_family", "fmp_total", "uniform", "l1norm")


def specs_for(args, recipe, arch, keeps, finetune_steps):
  base = dict(arch=arch, budget={"keep": keeps[-1], "metric": "flops"}, steps=args.steps,
              search_steps=args.search_steps, max_search_steps=max(args.search_steps,
                                                                   args.steps // 2),
              recipe=recipe, channel_keep=None, finetune_steps=finetune_steps)
  specs = []
  for seed in range(args.first_seed, args.first_seed + args.seeds):
    specs.append(dict(base, arm="fmp_family", seed=seed, family=list(keeps)))
    for keep in keeps:
      b = {"keep": keep, "metric": "flops"}
      specs.append(dict(base, arm="fmp_total", seed=seed, budget=b))
      for arm in ("uniform", "l1norm"):
        spec = dict(base, arm=arm, seed=seed, budget=b,
                    recipe=dict(recipe, search={k: recipe["search"][k]
                                                for k in ablation.BASELINE_FIELDS}))
        spec.pop("channel_keep")
        spec.pop("max_search_steps")
        specs.append(spec)
  return specs


def included_runs(paths, settings, new_seeds):
  """Rows of earlier --json files made with the same settings (e.g. seed 0 of a run now extended)."""
  rows = []
  for path in paths:
    with open(path) as f:
      saved = json.load(f)
    theirs = {k: saved["settings"].get(k) for k in settings if k != "seeds"}
    mine = {k: v for k, v in settings.items() if k != "seeds"}
    if theirs != mine:
      diff = ", ".join(f"{k}: {theirs[k]} there, {mine[k]} now" for k in mine
                       if theirs[k] != mine[k])
      raise SystemExit(f"--include {path}: made with other settings ({diff}).")
    seeds = {r["seed"] for r in saved["runs"]}
    if seeds & (set(new_seeds) | {r["seed"] for r in rows}):
      raise SystemExit(f"--include {path}: seed(s) {sorted(seeds)} are already in this run; "
                       "use --first-seed to run other seeds.")
    rows.extend(saved["runs"])
  return rows


def flatten(rows):
  out = []
  for r in rows:
    out.extend(r["members"] if "members" in r else [r])
  return out


def plot(table, bicubic, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axs = plt.subplots(1, 2, figsize=(10, 4))
  styles = {"fmp_family": ("C3", "o-", "FMP family (one search)"),
            "fmp_total": ("C0", "s--", "FMP, a search per budget"),
            "uniform": ("C2", "^:", "uniform width"), "l1norm": ("C1", "v:", "L1-norm")}
  for ax, (key, label) in zip(axs, (("flops_ratio", "counted FLOPs"),
                                    ("latency_ratio", "measured latency"))):
    for arm, (color, style, name) in styles.items():
      pts = sorted((100 * r[key], r["psnr"], r["psnr_std"]) for r in table
                   if r["arm"] == arm and r[key] is not None)
      if pts:
        x, y, e = zip(*pts)
        ax.errorbar(x, y, yerr=e, fmt=style, color=color, label=name, capsize=3)
    ax.axhline(bicubic, color="0.5", lw=1, ls="--", label="bicubic")
    ax.set_xlabel(f"{label}, % of dense ESRB-3-32")
    ax.set_ylabel("PSNR, held-out bundled photos (dB)")
    ax.grid(alpha=0.3)
  axs[0].legend(fontsize=8)
  fig.suptitle("One FMP search, a family of models (mean ± std over seeds)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--arch", default="esrb-3-32")
  p.add_argument("--scale", type=int, default=2)
  p.add_argument("--keeps", default="0.5,0.3,0.15", help="descending kept FLOPs fractions")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--first-seed", type=int, default=0, help="run seeds first..first+seeds-1")
  p.add_argument("--include", action="append", default=[], metavar="JSON",
                 help="add the runs of an earlier --json with the same settings (other seeds)")
  p.add_argument("--steps", type=int, default=3390, help="the ablation's T (sets F = T - S)")
  p.add_argument("--search-steps", type=int, default=None, help="S (default: pace_steps)")
  p.add_argument("--finetune-steps", type=int, default=None, help="F (default: T - S)")
  p.add_argument("--config", default=os.path.join(os.path.dirname(HERE), "configs",
                                                  "ablation.py"))
  p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE")
  p.add_argument("--jobs", type=int, default=None)
  p.add_argument("--cache", default=os.path.join(os.path.dirname(HERE), "workdir_bench",
                                                 "family"))
  p.add_argument("--json", default=None)
  p.add_argument("--plot", default=None, help="figure path (default: <cache>/family.png)")
  p.add_argument("--no-time", action="store_true")
  args = p.parse_args(argv)

  keeps = [float(k) for k in args.keeps.split(",")]
  if sorted(keeps, reverse=True) != keeps:
    raise SystemExit("--keeps must be in descending order.")
  recipe = ablation.load_recipe(args.config, args.set)
  arch = ablation.parse_arch(args.arch, args.scale)
  args.search_steps = args.search_steps or int(recipe["search"]["pace_steps"])
  finetune = args.finetune_steps or args.steps - args.search_steps
  specs = specs_for(args, recipe, arch, keeps, finetune)
  settings = {"keeps": keeps, "seeds": args.seeds, "finetune_steps": finetune,
              "search_steps": args.search_steps, "arch": arch}
  new_seeds = range(args.first_seed, args.first_seed + args.seeds)
  earlier = included_runs(args.include, settings, new_seeds)
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
  jobs = args.jobs or max(1, cores)
  print(f"family bench: {args.arch.upper()} x{args.scale}, keeps {keeps}, {args.seeds} seed(s), "
        f"F={finetune} fine-tune steps per model, S={args.search_steps}; {len(specs)} runs, "
        f"{jobs} job(s)", flush=True)
  t0 = time.time()
  rows = flatten(ablation.run_all(specs, args.cache, jobs,
                                  on_row=lambda r: print(f"  {r['arm']:<11} seed {r['seed']} done "
                                                         f"({r['seconds'] / 60:.1f} min)",
                                                         flush=True)))
  if not args.no_time:
    measured = ablation.time_models(rows, arch)
    for r in rows:
      r["latency_measured_ratio"] = measured[json.dumps(r["widths"], sort_keys=True)]
  rows = earlier + rows
  seeds = sorted({r["seed"] for r in rows})
  table = ablation.summarise(rows, list(ARMS), reference="fmp_total")  # fmp_family: vs separate
  print()
  print(ablation.format_table(table, rows[0]["bicubic_psnr"], reference="fmp_total"))
  fam = [r for r in rows if r["arm"] == "fmp_family"]
  sep = [r for r in rows if r["arm"] == "fmp_total"]
  fam_search = sum(max(r["search_steps"] for r in fam if r["seed"] == s) for s in seeds)
  sep_search = sum(r["search_steps"] for r in sep)
  deepest = sum(r["search_steps"] for r in sep if abs(r["budget_keep"] - keeps[-1]) < 1e-9)
  print(f"\nsearch steps, summed over seeds: family {fam_search} (one search per seed), separate "
        f"searches {sep_search} ({len(keeps)} per seed), the deepest separate search alone "
        f"{deepest}: family / deepest = {fam_search / max(deepest, 1):.2f}; fine-tune steps "
        f"{finetune} per model either way")
  bicubic = rows[0]["bicubic_psnr"]
  path = args.plot or os.path.join(args.cache, "family.png")
  plot(table, bicubic, path)
  print(f"figure: {path}; wall time {(time.time() - t0) / 60:.1f} min")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"settings": dict(settings, seeds=len(seeds)), "summary": table, "runs": rows},
                f, indent=1)


if __name__ == "__main__":
  main()
