"""Measures of text: repetition and usability (`quality.py`), embeddings (`embeddings.py`)."""
