"""The prompt registry: versioned prompts and movable labels over HTTP and gRPC."""
