"""Who is calling: passwords, access tokens (JWT) and vendor API keys."""
