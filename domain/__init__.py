"""What the pipeline's records mean, shared by the stages and the tools: typed views of the records, the
controlled vocabulary, the search-store client and index management, and the JSON-LD/XMP renderers."""
from streams import package_data_dir

PROMPTS_DIR = package_data_dir("domain", "prompts", "ASSETSTREAM_PROMPTS_DIR")
"""The bundled prompt templates and output schemas (prompts/<task>/v<N>.md + .schema.json), read by
enrich and validate; ASSETSTREAM_PROMPTS_DIR or the setting enrich.prompts_dir point elsewhere."""
