/* structure.c - not written yet. */
