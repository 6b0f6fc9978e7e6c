"""What every Vane service shares: settings, logs, telemetry, database, bus, cache, auth, health, runtime."""
