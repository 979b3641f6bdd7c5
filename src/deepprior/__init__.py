"""deepprior — image restoration with deep image priors (DAEP, DMSP, DIP, DeepRED)."""
__version__ = "0.1.0"
