"""Audio I/O, corpora (LibriSpeech layout, CoVoST 2 tsv), length tables and the synthetic corpus."""
