"""xdsbus edge: follows the ledger and serves it to Envoy over xDS."""
