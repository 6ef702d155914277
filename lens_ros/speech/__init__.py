"""Offline speech recognition for spoken commands: grammar-constrained pocketsphinx (default),
dictation, optional Whisper; utterance segmentation; vocabulary-to-JSGF grammar builder."""
