"""Data: synthetic phantoms (more sources and transforms arrive with the data pipeline)."""
