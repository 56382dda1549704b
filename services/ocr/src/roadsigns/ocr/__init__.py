"""OCR worker: reads the text on each sign crop with Tesseract."""
