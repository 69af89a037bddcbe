"""The index sink: `validated` -> Elasticsearch/OpenSearch, with external versioning (see docs/index.md)."""
