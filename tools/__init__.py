"""Developer-only tools: regenerate docs, suites and the sample data (not shipped)."""
