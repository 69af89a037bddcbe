"""What the pipeline's records mean, shared by the stages and the tools: typed views of the records, the
controlled vocabulary, the search-store client and index management, and the JSON-LD/XMP renderers."""
