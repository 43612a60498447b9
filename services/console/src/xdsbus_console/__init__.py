"""xdsbus console: a read-only web view of the ledger, object status, sources and proxies."""
