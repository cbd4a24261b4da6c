"""Decoders turn engine outputs into the one Segmentation type; chosen by name."""

from perception.models.decoders.base import DECODERS, Decoder, available_decoders, make_decoder

__all__ = ["DECODERS", "Decoder", "available_decoders", "make_decoder"]
