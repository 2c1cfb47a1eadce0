"""Who may call: bearer tokens (twisted.cred), keys and JWKS, roles, and the audit log."""
