"""The search store (Elasticsearch/OpenSearch): client, index management (versioned indices behind aliases)
and search, shared by the index sink, enrich's dedupe, the CLI and the ops tools."""
