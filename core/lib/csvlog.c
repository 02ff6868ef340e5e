/* csvlog.c - not written yet. */
