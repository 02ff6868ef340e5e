/* augment.c - not written yet. */
