"""The knowledge library: documents -> chunks -> embeddings -> a FAISS index, and search over it. Plain code: no
Temporal, database, object storage or HTTP; the activities and services that call it do the I/O."""
