"""Keys of system_config that the catalogue reads and writes."""

LAST_SYNCED_AT_KEY = "catalogue.last_synced_at"
