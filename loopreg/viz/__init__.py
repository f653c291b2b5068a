"""Small dependency-light renderers for previews and contact sheets (numpy + Pillow)."""
