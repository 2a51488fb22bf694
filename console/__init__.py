"""aibridge-console: the web UI, a client of the admin API like aibridgectl."""
