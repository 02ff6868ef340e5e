/* synth.c - not written yet. */
