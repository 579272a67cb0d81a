"""Every side effect of leadflow: email, store writes, assignment. Each activity is idempotent."""
