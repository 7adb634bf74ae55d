"""Bundled files: the pretrained LIIF checkpoint and the demo sample image (see README.md here)."""
