"""StyleGAN2: the network, the official checkpoint formats and the family's spaces."""
