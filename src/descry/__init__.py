"""descry: self-hosted image captioning and metadata enrichment."""

__version__ = "0.1.0"
