"""The benchmark harness: registry, context, statistics, table, runner."""
