/* linear.c - not written yet. */
