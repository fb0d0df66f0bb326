"""attnbench: additive vs multiplicative attention in Seq2Seq models, measured."""

__version__ = "0.1.0"
