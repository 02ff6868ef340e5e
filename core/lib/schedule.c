/* schedule.c - not written yet. */
