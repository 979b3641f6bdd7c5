"""Networks: the denoising autoencoder (``dae``) and the DIP hourglass family (``hourglass``)."""
