"""Real components for tests and benchmarks: nats-server, Envoy, the whole stack, HTTP, certificates."""
