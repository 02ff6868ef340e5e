/* dataset.c - not written yet. */
