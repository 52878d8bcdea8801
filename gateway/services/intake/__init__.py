"""Getting a video onto disk safely: the URL guard, downloads, uploads, content sniffing and temp files."""
