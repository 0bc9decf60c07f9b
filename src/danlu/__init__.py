"""danlu (丹炉): fine-tune a small open model for your own domain, end to end."""

__version__ = "0.1.0"
