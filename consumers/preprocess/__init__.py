"""The preprocess consumer group: raw -> preprocessed.

Pure building blocks live in their own modules so they can be tested and benchmarked alone:
fetch (bytes from a URI, SSRF-safe), decode (safe Pillow decode), thumbnail, metadata (EXIF/XMP/IPTC/place),
ocr (gated tesseract), hashes (sha256/pHash/dHash/bands), signals (faces, NSFW, colours). stage.py wires them.
"""
