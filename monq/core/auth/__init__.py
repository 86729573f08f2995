"""Authentication and authorisation primitives: passwords, tokens, permissions."""
