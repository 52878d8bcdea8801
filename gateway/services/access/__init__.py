"""Who may call the API: API keys, the access check and the rate limits."""
