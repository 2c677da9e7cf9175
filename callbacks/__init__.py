"""Lightning callbacks: the output writer (atomic files, manifest, summary) and metric logging."""
