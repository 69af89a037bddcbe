from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from streams.config import Section


class IndexSettings(Section):
    """Elasticsearch / OpenSearch sink (consumers/index). See docs/index.md.

    ASSETSTREAM_INDEX__URL=https://es:9200  ASSETSTREAM_INDEX__API_KEY=...  ASSETSTREAM_INDEX__SERVER_MODE=serverless
    """

    # --- connection -----------------------------------------------------------------------------------------
    url: str = Field("http://127.0.0.1:9200", description="Elasticsearch / OpenSearch URL (a password in it is "
                     "shown redacted)")
    api_key: SecretStr | None = Field(None, description="Elasticsearch API key (base64 'id:key' form); never logged")
    username: str | None = Field(None, description="basic auth user (with password)")
    password: SecretStr | None = Field(None, description="basic auth password (with username)")
    ca_certs: str | None = Field(None, description="path to a PEM CA bundle for https URLs")
    verify_certs: bool = Field(True, description="verify the server's TLS certificate")
    server_mode: Literal["stack", "serverless"] = Field(
        "stack", description="elasticsearch-py server_mode. 'stack' sends the ES compatibility media type "
        "(application/vnd.elasticsearch+json; compatible-with=9); 'serverless' sends plain application/json, "
        "which Elastic Serverless and the embedded/test store (osmem) need. The embedded run sets 'serverless'.")
    request_timeout_s: float = Field(30.0, description="per-request timeout (bulk, search, admin calls)")
    max_retries: int = Field(0, description="client-level retries on connection errors; the runner already "
                             "retries transient items with backoff, so keep this low")
    health_check_interval_s: float = Field(1.0, description="while the store is down, how often ready()/"
                                           "should_pause() probe it again (a batch waiting out its backoff "
                                           "retries as soon as a probe answers)")

    # --- index layout -----------------------------------------------------------------------------------------
    index: str = Field("assetstream-assets", description="base name: aliases <index>-read/-write, concrete <index>-vN")
    initial_version: int = Field(1, description="N of the first concrete index <index>-vN created by ensure_index")
    number_of_shards: int = Field(1, description="primary shards of each concrete index <index>-vN")
    number_of_replicas: int = Field(1, description="0 for single-node stores")

    # --- vectors and hybrid search (docs/index.md "Search") -----------------------------------------------------
    vector_mode: Literal["es", "opensearch", "off"] = Field(
        "off", description="how the document's MiniLM text vector (text_vector, 384 floats) is mapped: 'es' = "
        "dense_vector (cosine, HNSW) searched by the store's knn + rrf retriever; 'opensearch' = knn_vector "
        "(hnsw, lucene, cosinesimil) with index.knn; 'off' = packed in text_vector_b64, _source only (the "
        "embedded store has no kNN): hybrid search ranks it by exact cosine in the search process. Default 'off' works "
        "on every store; set 'es' or 'opensearch' in production (a change needs `assetstream index migrate`)")
    embed_documents: bool = Field(True, description="embed each document's text at index time (MiniLM, "
                                  "25-55 ms per document on one core); False = no text_vector (keyword search only)")
    embed_images: bool = Field(True, description="store each document's image vector at index time "
                               "(EfficientNet-Lite0 pooled features of the preview, one 224 px pass per document, "
                               "~45 ms on a busy core): 'more like this image' and search by an uploaded image")
    image_scan_limit: int = Field(5000, ge=1, description="vector_mode 'off': image similarity computes cosine over "
                                  "at most this many filtered documents (exact, in the search process; 1280 "
                                  "float16 each, ~3.4 KB of _source per document read)")
    query_image_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest query image the search "
                                       "API accepts (POST /v1/similar)")
    query_image_max_pixels: int = Field(50_000_000, ge=10_000, description="most pixels a query image may have "
                                        "(its header is read first; a larger one is refused, not decoded)")
    vector_scan_limit: int = Field(20000, description="vector_mode 'off': hybrid/similar search computes cosine "
                                   "over at most this many filtered documents (exact, in the search process)")
    vector_cache: bool = Field(True, description="vector_mode 'off': keep the stored vectors in this process's "
                               "memory for exact cosine (domain/store/vector_cache.py) instead of reading them per "
                               "query; 100k text vectors = 150 MB")
    vector_cache_check_s: float = Field(1.0, ge=0.05, description="vector cache: read what was indexed since this "
                                        "often, in the background (a document is found by meaning about this long "
                                        "after it is searchable)")
    vector_cache_count_s: float = Field(30.0, ge=0, description="vector cache: compare the store's document "
                                        "count (which sees a delete, or a document written with an older "
                                        "indexed_at) at most this often; 0 = at every check. A deleted document's "
                                        "row is harmless meanwhile (not found when its hit is read), but it can "
                                        "take one of the k best places")
    vector_cache_reload_s: float = Field(600.0, gt=0, description="vector cache: read everything again at least "
                                         "this often")
    vector_cache_dir: str = Field("~/.cache/assetstream/vectors", description="vector cache: where a process "
                                  "saves what it loaded (a float32 .npy, memory-mapped by the next process, and "
                                  "the ids) so the first query of a fresh `assetstream search` reads the file and "
                                  "only what was indexed since, not every vector; empty = never saved")
    vector_cache_max_docs: int = Field(500_000, ge=1, description="vector cache: most documents kept per alias "
                                       "and kind")
    image_cache_max_docs: int = Field(100_000, ge=1, description="vector cache: most documents kept per alias "
                                      "for image similarity (1280 float32, 5 KB each: 100k = 512 MB) and for "
                                      "hybrid search's visual leg (1000 class scores, 4 KB each: 400 MB); the "
                                      "documents past it are not ranked by them")
    semantic_min_similarity: float | None = Field(0.08, ge=-1.0, le=1.0, description="hybrid and semantic "
                                                  "search: the text kNN leg keeps only documents whose MiniLM "
                                                  "cosine with the query is at least this, and `total`/facets "
                                                  "count only those; None = no floor (the k nearest, however "
                                                  "far). 0.08 is the highest value that lowers no hybrid "
                                                  "recall@10 on the bench's sets; higher values drop more "
                                                  "padding for nonsense words but lose relevant assets "
                                                  "(docs/benchmarks.md, 'A relevance floor')")
    visual_min_similarity: float | None = Field(None, ge=-1.0, le=1.0, description="hybrid's visual leg: the "
                                                "least cosine between an image vector and the leg's class "
                                                "prototype query; None (default) = no floor, the leg is gated by "
                                                "visual_leg_threshold on the query's words instead (measured: no "
                                                "gap between relevant and irrelevant image scores)")
    visual_leg_max_hits: int | None = Field(10, ge=1, le=10_000, description="hybrid's visual leg: at most "
                                            "this many images (its best) go into the fusion and the answer's "
                                            "total; None = as many as the other legs (rrf_window). The leg has "
                                            "no score floor (visual_min_similarity): this bounds how many "
                                            "images a word that names an ImageNet class ('zebrawood' -> zebra) "
                                            "adds to an answer")
    visual_leg_weak_below: float | None = Field(0.6, ge=0.0, le=1.0, description="hybrid's visual leg: when "
                                                "the query's closest ImageNet class name is below this cosine "
                                                "(a weak match: 'galaxy' -> mobile phone 0.58, 'tissue' -> toilet "
                                                "paper 0.51), only the leg's visual_leg_weak_hits best images go "
                                                "into the fusion instead of visual_leg_max_hits; None = every "
                                                "query's leg contributes visual_leg_max_hits. 0.6 was chosen on the "
                                                "bench's fit words in session 7 (off then: it lost held-out words); "
                                                "on by default since session 17, where it gained fit and held-out "
                                                "words (docs/benchmarks.md, 'Session 17 figures')")
    visual_leg_weak_hits: int = Field(3, ge=1, le=10_000, description="hybrid's visual leg: how many of its "
                                      "best images a weak class match (visual_leg_weak_below) contributes")
    rrf_rank_constant: int = Field(60, description="k of reciprocal rank fusion: score = sum 1 / (k + rank)")
    rrf_window: int = Field(50, description="how many hits of each leg (BM25, kNN) go into the fusion")
    keyword_coverage: float | None = Field(100.0, ge=0.0, description="keyword search (and hybrid's keyword "
                                           "leg): a constant score this large per query word a document matches "
                                           "(in its text or, for a vocabulary term, its tags; STOPWORDS not "
                                           "counted), so an asset matching more of the query's words ranks above "
                                           "one matching fewer; BM25 orders those matching as many. It has to "
                                           "exceed the BM25 score one word can add: up to 12.4 on the bench's "
                                           "labelled set, ~35 for a word in 1 title of 100k documents (Lucene's "
                                           "BM25 term score < idf = 11, x title^3, + the synonym clause's 2). "
                                           "None/0 = off (BM25 alone, a tag match stacking on the best text field)")
    tag_leg: bool = Field(True, description="hybrid search: when the query names vocabulary tags (synonyms "
                          "included), fuse a third ranking of the documents carrying them: published tags first, "
                          "then held suggestions, then the model's weaker proposals (model_tags)")
    literal_leg: bool = Field(True, description="hybrid search: fuse one more ranking, of the documents whose own "
                              "text (title, alt text, caption, visible text) holds every word of the query as "
                              "written (no synonyms, no tags), so an exact match is not outranked by documents "
                              "that only a synonym-expanded weak model tag and the visual leg rank (issue 17, "
                              "trial 12: 'lemon')")
    visual_leg: bool = Field(True, description="hybrid search: when the query's words are close to ImageNet class "
                             "names (MiniLM cosine >= visual_leg_threshold), fuse a ranking of the documents' image "
                             "vectors against those classes' prototypes (the classifier's last-layer rows, "
                             "domain/vision/prototypes.py): finds images whose text never names what they show. "
                             "Only image vectors written by this process's image model are ranked")
    visual_leg_threshold: float = Field(0.5, ge=0.0, le=1.0, description="visual leg: the least cosine between the "
                                        "query's and a class name's MiniLM vectors for the class to count (lower "
                                        "= more queries get the leg, and more noise)")
    visual_leg_max_classes: int = Field(5, ge=1, le=1000, description="visual leg: at most this many classes, "
                                        "closest first; their prototypes are summed into one query vector")

    # --- duplicate families (consumers/index/families.py, propagate.py; docs/index.md "Duplicate families") ----
    family_propagation: bool = Field(False, description="offer the alt text and tags of a family's approved (or "
                                     "most confident auto-applied) member to the other members, marked "
                                     "'propagated'; a field a person set is never changed")
    family_decay: float = Field(0.9, gt=0.0, le=1.0, description="propagated confidence = the source's confidence "
                                "(1.0 when a person approved it; per tag its score) x this")
    family_apply_threshold: float | None = Field(None, ge=0.0, le=1.0, description="a propagated value at or "
                                                 "above this confidence is applied, below it is a suggestion; "
                                                 "None = validate.auto_apply_threshold")

    # --- bulk writes -------------------------------------------------------------------------------------------
    bulk_max_actions: int = Field(1000, description="split one runner batch into bulk requests of at most this "
                                  "many items (the runner batches by settings.runner.batch_*)")
    bulk_max_bytes: int = Field(10 * 1024 * 1024, description="... and at most this many request bytes")
    refresh: Literal["false", "wait_for", "true"] = Field(
        "false", description="refresh policy of each bulk request: 'false' in production (the index refreshes "
        "on its own interval), 'wait_for' to return only once the batch is searchable (slow)")

    # --- migrate ------------------------------------------------------------------------------------------------
    migrate_batch_size: int = Field(1000, description="documents per scroll page / reindex batch when migrating")
    migrate_use_reindex_api: bool = Field(True, description="use the store's _reindex API; False = scan + bulk "
                                          "from this process (also the automatic fallback)")
