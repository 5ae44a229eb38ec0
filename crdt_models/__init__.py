"""Typed views over the shared pycrdt documents, their merge and authority rules, the HLC."""
