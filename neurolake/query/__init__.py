"""SQL over the lake (DuckDB), groups, exports and the read paths of analyses."""

# A query's default time limit (s). Here, not in the engine, so that the command line builds its
# parser without importing DuckDB.
DEFAULT_TIMEOUT_S = 300.0
