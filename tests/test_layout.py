"""The package's import graph: no cycles, and no import that runs back up a floor."""

import ast

# Floors, lowest first: a module may import its own floor or a lower one (the package
# __init__ re-exports and is left out).
FLOORS = [
    {"fmp_jax.arch", "fmp_jax.tree_paths", "fmp_jax.metrics", "fmp_jax.sharding",
     "fmp_jax.reduction", "fmp_jax.data", "fmp_jax.cli", "fmp_jax.workdir",
     "fmp_jax.metric_logging", "fmp_jax.preemption"},
    {"fmp_jax.models", "fmp_jax.loop", "fmp_jax.checkpoint", "fmp_jax.plots"},
    # inference needs the models only (padding, layer table), not the search.
    {"fmp_jax.pruning", "fmp_jax.export", "fmp_jax.evaluation", "fmp_jax.stage",
     "fmp_jax.inference"},
    {"fmp_jax.finetuning", "fmp_jax.config_base", "fmp_jax.members", "fmp_jax.profiling",
     "fmp_jax.preflight"},
    {"fmp_jax.train", "fmp_jax.report"},
    {"fmp_jax.main"},
]


def floor_of(module: str) -> int:
  for i, names in enumerate(FLOORS):
    if any(module == n or module.startswith(n + ".") for n in names):
      return i
  raise AssertionError(f"{module} is on no floor of tests/test_layout.py")


def imports(repo_root) -> dict[str, set[str]]:
  """module -> the fmp_jax modules it imports (anywhere in the file, lazy imports too)."""
  root = repo_root / "fmp_jax"
  graph = {}
  for path in root.rglob("*.py"):
    parts = path.relative_to(repo_root).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name for a in node.names if a.name.startswith("fmp_jax")}
      elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fmp_jax"):
        found.add(node.module)
        found |= {f"{node.module}.{a.name}" for a in node.names
                  if (root.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(
                      ".py").exists()}
    graph[name] = {m for m in found if m != name}
  return graph


def test_no_import_runs_up_a_floor(repo_root):
  upward = sorted(f"{m} -> {dep}" for m, deps in imports(repo_root).items() if m != "fmp_jax"
                  for dep in deps if dep != "fmp_jax" and floor_of(dep) > floor_of(m))
  assert not upward, upward


def test_inference_needs_nothing_of_the_search(repo_root):
  """Running a pruned model (an export) must not import the pruning wing."""
  deps = imports(repo_root)["fmp_jax.inference"]
  assert not [d for d in deps if d == "fmp_jax.pruning" or d.startswith("fmp_jax.pruning.")]


def test_no_import_cycle(repo_root):
  graph = {m: {d for d in deps if d != "fmp_jax"} for m, deps in imports(repo_root).items()
           if m != "fmp_jax"}
  # A package imports its own modules through __init__; count edges between modules only.
  graph = {m: {d for d in deps if d in graph and not m.startswith(d + ".")}
           for m, deps in graph.items()}
  state, cycle = {}, []

  def visit(m, stack):
    state[m] = "open"
    for d in sorted(graph[m]):
      if state.get(d) == "open":
        cycle.append(stack[stack.index(d):] + [d])
      elif d not in state:
        visit(d, stack + [d])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert not cycle, cycle

