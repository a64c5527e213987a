"""Towers: one encoder per modality and family (LSTM, CNN, Hugging Face, CLIP, open_clip), each
declaring its output width and, for text, its tokenizer."""
