"""Ingest: OTLP from any client, normalised, priced and durable in JetStream before it is acknowledged."""
