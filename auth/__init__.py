"""Identity: password hashing, signed tokens, API keys and the accounts they belong to."""
