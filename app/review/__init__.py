"""The review web app (docs/review.md): editors read the index and publish EditorDecisions to `feedback`.
It never writes the store; the `review` consumer group applies decisions."""
