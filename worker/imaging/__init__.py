"""ImageMagick (through Wand): decoding, orientation, metadata, redaction and encoding."""
