"""Vane's server side: five services sharing services.common, each one package with one entry point."""
