"""FMP pruning: complexity counting, hypernetwork, budgets, search and surgery."""
