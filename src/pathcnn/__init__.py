"""pathcnn: honest, tracked CNN experiments on H&E patches."""

__version__ = "0.1.0"
