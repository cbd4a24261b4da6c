"""Model cards, pre-processing, decoders and the one segmentation result type."""
