"""Generated from proto/vane/v1 by proto/generate.py: do not edit."""
