"""Training-set attacks.  Importing this package registers the in-tree ones."""
