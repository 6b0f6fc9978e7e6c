"""The gateway: one origin (Caddy, a real reverse proxy) for the dashboard and every public API."""
