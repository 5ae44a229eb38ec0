"""Typed views over the shared pycrdt documents, the merge/authority rules and the hybrid logical clock. No I/O."""
