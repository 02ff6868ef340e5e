/* idx.c - not written yet. */
