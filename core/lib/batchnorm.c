/* batchnorm.c - not written yet. */
