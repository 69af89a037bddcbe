"""The writeback consumer group: approved metadata from `validated` into DAMs, CMSs and files (docs/writeback.md)."""
