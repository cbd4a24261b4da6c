"""Ground floor: value types that cross threads and the wire (frames, stamps, segmentation,
tensor specs, results), the base error and the typed registry. Imports nothing of perception."""
