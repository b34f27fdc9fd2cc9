"""`wlops serve`: an OpenAI-compatible server for many LoRA adapters on one base model, with retrieval-augmented
answers and a history of every completion. A process beside the API that reuses the domain services and the access
rules."""
