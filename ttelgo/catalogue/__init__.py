"""The sellable catalogue: the stored supplier copy, retail and vendor pricing."""
