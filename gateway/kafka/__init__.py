"""Everything that touches confluent-kafka. Nothing here imports FastAPI or Starlette."""
