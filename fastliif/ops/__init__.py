"""Functional ops with autograd and backend choice."""
from ._backends import BACKENDS, availability
from .dynamic_conv import dynamic_conv
from .liif_query import dot_precision, liif_query, project_features

__all__ = ["liif_query", "dynamic_conv", "project_features", "dot_precision", "availability", "BACKENDS"]
