"""DCGAN: the network built from a checkpoint's shapes, and the family with its built-ins."""
