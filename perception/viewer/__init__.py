"""`perception view`: a local web page that draws what a running node sees (masks, tracks, latency)."""
