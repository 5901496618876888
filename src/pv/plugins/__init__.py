"""Stage 4, plugins: the pytest plugins (contracts as test items; gate reports)."""
