/* activation.c - not written yet. */
