"""xdsbus builder: folds the event log into versioned ledger snapshots."""
