"""Target-identification baselines.  Importing this package registers the in-tree ones."""
