/* models.c - not written yet. */
