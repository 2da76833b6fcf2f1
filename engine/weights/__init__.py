"""Weight file readers: safetensors directories and GGUF files."""
