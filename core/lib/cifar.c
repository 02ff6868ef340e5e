/* cifar.c - not written yet. */
