/* dropout.c - not written yet. */
