"""Worker pools: which workflows and activities run on which task queues."""
