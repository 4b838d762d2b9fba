"""Self-supervision: probes of memory, temperature and throttling; degradation; watchdog."""
