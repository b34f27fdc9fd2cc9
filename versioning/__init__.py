"""Dataset versions as a plain library: canonical rows with stable ids, content hashes, row-by-row diffs, annotations
(a corrected answer or checks, tags, exclusion) and exports to the common formats. No database, storage or Temporal:
`services.dataset_versions` keeps the versions."""
