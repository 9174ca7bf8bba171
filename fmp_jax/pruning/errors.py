"""The pruning code's errors (a module of their own so every layer can raise them)."""


class BudgetError(ValueError):
  """A budget that cannot be used."""


class BudgetNotReachedError(RuntimeError):
  """The search hit its step limit before the budget's criterion held."""
