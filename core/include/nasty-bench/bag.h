/*
 * bag.h - a hook's own resumable state as named tensors (a "bag").
 *
 * The training loop (train.h) saves its whole state after every epoch and
 * resumes bit-identically from it. A hook that keeps state across steps of
 * its own (an attack's generator, its optimiser, its random stream, an image
 * pool) joins that state file through two callbacks: on save it puts its
 * pieces into a bag, on resume it gets them back out. The core writes the
 * bag into the same atomic state file as the network, under "hook.<name>"
 * (F32 or I64 tensors), and hands the same names back on resume.
 *
 * Saving: the nb_bag_put_* functions add entries. put_f32 and put_i64
 * REFERENCE the caller's memory, which must stay unchanged until the save
 * callback returns (the core writes the file right after); put_net,
 * put_optim and put_rng copy what they need. Names are [A-Za-z0-9_.-],
 * unique, at most NB_BAG_NAME_LEN - 1 bytes (a prefix plus a parameter
 * name fits).
 *
 * Resuming: the nb_bag_get_* functions copy an entry into the caller's
 * memory. A missing entry, a wrong type or a wrong size is an error naming
 * the entry; the core then stops the run with the state file's name. Every
 * entry of the file must be read by the load callback: one that nobody
 * asked for is an error too (a state file of another version of the hook).
 * A get_* that fails may leave the destination partly written; the run
 * stops anyway, and the next attempt starts from the state file again.
 */
#ifndef NASTY_BENCH_BAG_H
#define NASTY_BENCH_BAG_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "optim.h"
#include "rng.h"

#define NB_BAG_NAME_LEN 160

typedef struct nb_bag nb_bag;

/* ---- saving ---- */
/* n floats at data (referenced, not copied). */
int nb_bag_put_f32(nb_bag *b, const char *name, const float *data, size_t n,
		   char *err);
/* n 64-bit integers at data (referenced, not copied). */
int nb_bag_put_i64(nb_bag *b, const char *name, const int64_t *data, size_t n,
		   char *err);
/* Every parameter and buffer of net as "<prefix>.<param>" (F32) and every
 * BatchNorm counter as "<prefix>.<bn>.num_batches_tracked" (I64). */
int nb_bag_put_net(nb_bag *b, const char *prefix, nb_net *net, char *err);
/* An optimiser's state (nb_optim_export) as "<prefix>.<param>.exp_avg" and
 * so on; state that does not exist yet is absent, as in nb_optim_export. */
int nb_bag_put_optim(nb_bag *b, const char *prefix, const nb_optim *opt,
		     char *err);
/* A random stream's exact position (copied). */
int nb_bag_put_rng(nb_bag *b, const char *name, const nb_rng *r, char *err);

/* ---- resuming ---- */
/* Copies the entry `name`, which must hold exactly n floats / integers. */
int nb_bag_get_f32(nb_bag *b, const char *name, float *data, size_t n,
		   char *err);
int nb_bag_get_i64(nb_bag *b, const char *name, int64_t *data, size_t n,
		   char *err);
/* Restores what nb_bag_put_net saved into net (same architecture). */
int nb_bag_get_net(nb_bag *b, const char *prefix, nb_net *net, char *err);
/* Replaces the optimiser's state with every "<prefix>.*" entry
 * (nb_optim_import: nothing changes unless all of them are good). */
int nb_bag_get_optim(nb_bag *b, const char *prefix, nb_optim *opt, char *err);
int nb_bag_get_rng(nb_bag *b, const char *name, nb_rng *r, char *err);

/* ---- for the core and for tests ---- */
nb_bag *nb_bag_new(void);
void nb_bag_free(nb_bag *b);
int nb_bag_count(const nb_bag *b);
/* The i-th entry: name, is_i64 (else F32), data and element count. */
void nb_bag_entry(const nb_bag *b, int i, const char **name, int *is_i64,
		  const void **data, size_t *n);
/* The first entry that no get_* has read, or NULL. */
const char *nb_bag_unread(const nb_bag *b);

#endif
