/* loss.c - not written yet. */
