"""BigGAN-deep: the network, its ImageNet classes and the family's z space."""
