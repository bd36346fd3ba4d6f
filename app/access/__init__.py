"""Who may do what: callers from API keys, the audit trail and per-key rate limits, over the repositories."""
