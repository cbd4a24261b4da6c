"""Weight-free segmenters (background modelling, colour rules, superpixels) behind the networks' interface."""

from perception.models.classic.base import CLASSIC_METHODS, ClassicMethod, available_methods, open_classic

__all__ = ["CLASSIC_METHODS", "ClassicMethod", "available_methods", "open_classic"]
