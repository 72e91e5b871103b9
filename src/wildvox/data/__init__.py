"""Data: utterance records, corpus list readers, trial lists and training datasets."""
