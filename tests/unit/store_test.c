/*
 * store_test.c - the artefact store: keys are SHA-256 in lowercase hex and
 * nothing else names a folder; a finished artefact reads back DONE with its
 * summary intact; every way its files can be damaged (a flipped byte, a
 * truncated log, a garbage or edited summary, a missing file) reads as
 * CORRUPT naming the file; discard removes it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "store.h"
#include "testutil.h"

static const char *const key_a =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void keys_and_hashes(void)
{
	char a[65], b[65], c[65];
	/* FIPS 180-2 test vectors */
	nb_sha256_hex("abc", 3, a);
	CU_ASSERT_STRING_EQUAL(a, key_a);
	nb_sha256_hex("", 0, a);
	CU_ASSERT_STRING_EQUAL(
	    a,
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	/* a key is the hash of its description: deterministic, distinct */
	nb_store_key("arch lenet5\nseed 1\n", a);
	nb_store_key("arch lenet5\nseed 1\n", b);
	nb_store_key("arch lenet5\nseed 2\n", c);
	CU_ASSERT_STRING_EQUAL(a, b);
	CU_ASSERT_STRING_NOT_EQUAL(a, c);
	CU_ASSERT_EQUAL(strlen(a), 64);
	CU_ASSERT_EQUAL(strspn(a, "0123456789abcdef"), 64);
	/* a file's hash is the hash of its bytes */
	char err[NB_ERR_LEN], *dir = tu_mkdtemp(), path[4096];
	snprintf(path, sizeof path, "%s/f", dir);
	write_text(path, "abc");
	CU_ASSERT_EQUAL(nb_sha256_file(path, a, err), 0);
	CU_ASSERT_STRING_EQUAL(a, key_a);
	snprintf(path, sizeof path, "%s/missing", dir);
	CU_ASSERT(nb_sha256_file(path, a, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "missing"));
	tu_rmtree(dir);
	free(dir);
}

/* A store in a fresh folder, with artefact `key` trained (best, log,
 * state) but not finished. */
static nb_store *make_store(char **dir, const char *key)
{
	char err[NB_ERR_LEN], path[4096];
	*dir = tu_mkdtemp();
	snprintf(path, sizeof path, "%s/runs/x", *dir); /* created as needed */
	nb_store *s = nb_store_open(path, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(nb_store_path(s, key, "best.safetensors", 1, path,
				      sizeof path, err),
			0);
	write_text(path, "pretend this is a checkpoint");
	nb_store_path(s, key, "log.csv", 0, path, sizeof path, err);
	write_text(path, "epoch,lr\n1,0.1\n2,0.1\n");
	nb_store_path(s, key, "state.safetensors", 0, path, sizeof path, err);
	write_text(path, "state");
	return s;
}

static void fill_summary(nb_model_summary *sum, const char *status)
{
	memset(sum, 0, sizeof *sum);
	snprintf(sum->status, sizeof sum->status, "%s", status);
	sum->epochs = 2;
	sum->best_epoch = 2;
	sum->best_acc = 91.23456789012345;
	sum->last_acc = 90.1;
	sum->wall_s = 12.5;
	sum->final_loss = 0.1 / 3;
	sum->final_ce = 1e-300;
	sum->final_kl = 0;
	snprintf(sum->desc, sizeof sum->desc,
		 "arch lenet5; strategy normal lr = 0.1; seed 1");
}

static void finish_then_done(void)
{
	char err[NB_ERR_LEN], path[4096], *dir;
	nb_store *s = make_store(&dir, key_a);
	nb_model_summary sum, back;
	const char *other =
	    "0000000000000000000000000000000000000000000000000000000000000000";
	CU_ASSERT_EQUAL(nb_store_lookup(s, other, &back, err), NB_STORE_NONE);
	CU_ASSERT_EQUAL(nb_store_lookup(s, key_a, &back, err),
			NB_STORE_PARTIAL);
	fill_summary(&sum, "ok");
	CU_ASSERT_EQUAL_FATAL(nb_store_finish(s, key_a, &sum, err), 0);
	CU_ASSERT_STRING_EQUAL(sum.key, key_a);
	CU_ASSERT_EQUAL(strlen(sum.best_sha256), 64);
	CU_ASSERT_EQUAL(strlen(sum.log_sha256), 64);
	nb_store_path(s, key_a, "state.safetensors", 0, path, sizeof path, err);
	CU_ASSERT(!exists(path)); /* finished: the state is gone */
	memset(&back, 0x55, sizeof back);
	CU_ASSERT_EQUAL_FATAL(nb_store_lookup(s, key_a, &back, err),
			      NB_STORE_DONE);
	CU_ASSERT_STRING_EQUAL(back.key, key_a);
	CU_ASSERT_STRING_EQUAL(back.status, "ok");
	CU_ASSERT_EQUAL(back.epochs, 2);
	CU_ASSERT_EQUAL(back.best_epoch, 2);
	/* doubles round-trip exactly */
	CU_ASSERT(back.best_acc == sum.best_acc);
	CU_ASSERT(back.final_loss == sum.final_loss);
	CU_ASSERT(back.final_ce == sum.final_ce);
	CU_ASSERT(back.wall_s == sum.wall_s);
	CU_ASSERT_STRING_EQUAL(back.desc, sum.desc);
	CU_ASSERT_STRING_EQUAL(back.best_sha256, sum.best_sha256);
	CU_ASSERT_STRING_EQUAL(back.log_sha256, sum.log_sha256);

	/* a diverged model may have no best checkpoint (nor log) */
	const char *key_b =
	    "1111111111111111111111111111111111111111111111111111111111111111";
	nb_store_path(s, key_b, "state.safetensors", 1, path, sizeof path, err);
	CU_ASSERT_EQUAL(nb_store_lookup(s, key_b, &back, err),
			NB_STORE_PARTIAL);
	fill_summary(&sum, "ok");
	CU_ASSERT(nb_store_finish(s, key_b, &sum, err) < 0); /* ok needs both */
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "best.safetensors"));
	fill_summary(&sum, "diverged");
	sum.epochs = sum.best_epoch = 0;
	CU_ASSERT_EQUAL(nb_store_finish(s, key_b, &sum, err), 0);
	CU_ASSERT_EQUAL(nb_store_lookup(s, key_b, &back, err), NB_STORE_DONE);
	CU_ASSERT_STRING_EQUAL(back.status, "diverged");
	CU_ASSERT_STRING_EQUAL(back.best_sha256, "");

	/* discard, twice */
	CU_ASSERT_EQUAL(nb_store_discard(s, key_a, err), 0);
	CU_ASSERT_EQUAL(nb_store_lookup(s, key_a, &back, err), NB_STORE_NONE);
	CU_ASSERT_EQUAL(nb_store_discard(s, key_a, err), 0);
	nb_store_close(s);
	tu_rmtree(dir);
	free(dir);
}

/* The damage each case does, given the artefact's folder. */
static void flip_best(const char *d)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/best.safetensors", d);
	FILE *f = fopen(p, "r+b");
	fseek(f, 5, SEEK_SET);
	int c = fgetc(f);
	fseek(f, 5, SEEK_SET);
	fputc(c ^ 1, f);
	fclose(f);
}

static void truncate_log(const char *d)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/log.csv", d);
	CU_ASSERT_EQUAL(truncate(p, 10), 0);
}

static void garbage_summary(const char *d)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/summary.ini", d);
	write_text(p, "\x7f"
		      "ELF garbage \x01\x02\n");
}

static void edit_summary(const char *d)
{
	/* a well-formed line changed by hand: the check line catches it */
	char p[4096], buf[8192];
	snprintf(p, sizeof p, "%s/summary.ini", d);
	FILE *f = fopen(p, "rb");
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *at = strstr(buf, "epochs = 2");
	CU_ASSERT_PTR_NOT_NULL_FATAL(at);
	at[9] = '3';
	write_text(p, buf);
}

static void cut_summary(const char *d)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/summary.ini", d);
	struct stat st;
	stat(p, &st);
	CU_ASSERT_EQUAL(truncate(p, st.st_size - 30), 0);
}

static void remove_best(const char *d)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/best.safetensors", d);
	CU_ASSERT_EQUAL(unlink(p), 0);
}

static void remove_log(const char *d)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/log.csv", d);
	CU_ASSERT_EQUAL(unlink(p), 0);
}

static void corruption_is_named(void)
{
	static const struct {
		const char *what;
		void (*damage)(const char *dir);
		const char *file; /* the error must name it */
	} cases[] = {
	    {"flipped byte in best", flip_best, "best.safetensors"},
	    {"truncated log", truncate_log, "log.csv"},
	    {"garbage summary", garbage_summary, "summary.ini"},
	    {"edited summary", edit_summary, "summary.ini"},
	    {"cut summary", cut_summary, "summary.ini"},
	    {"missing best", remove_best, "best.safetensors"},
	    {"missing log", remove_log, "log.csv"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[NB_ERR_LEN], dir_k[4096], *dir;
		nb_store *s = make_store(&dir, key_a);
		nb_model_summary sum;
		fill_summary(&sum, "ok");
		CU_ASSERT_EQUAL_FATAL(nb_store_finish(s, key_a, &sum, err), 0);
		snprintf(dir_k, sizeof dir_k, "%s/store/%s", nb_store_root(s),
			 key_a);
		cases[i].damage(dir_k);
		err[0] = '\0';
		enum nb_store_state st = nb_store_lookup(s, key_a, &sum, err);
		if (st != NB_STORE_CORRUPT || !strstr(err, cases[i].file))
			printf("\n  %s: state %d, '%s'\n", cases[i].what,
			       (int)st, err);
		CU_ASSERT_EQUAL(st, NB_STORE_CORRUPT);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].file));
		CU_ASSERT_PTR_NULL(strchr(err, '\n'));
		/* the cure */
		CU_ASSERT_EQUAL(nb_store_discard(s, key_a, err), 0);
		CU_ASSERT_EQUAL(nb_store_lookup(s, key_a, &sum, err),
				NB_STORE_NONE);
		nb_store_close(s);
		tu_rmtree(dir);
		free(dir);
	}
}

/* A summary copied into another artefact's folder is not that artefact's. */
static void summary_of_another_key(void)
{
	char err[NB_ERR_LEN], from[4096], to[4096], *dir;
	const char *key_b =
	    "2222222222222222222222222222222222222222222222222222222222222222";
	nb_store *s = make_store(&dir, key_a);
	nb_model_summary sum;
	fill_summary(&sum, "ok");
	CU_ASSERT_EQUAL_FATAL(nb_store_finish(s, key_a, &sum, err), 0);
	static const char *const files[] = {"summary.ini", "best.safetensors",
					    "log.csv"};
	for (int i = 0; i < 3; i++) {
		nb_store_path(s, key_a, files[i], 0, from, sizeof from, err);
		nb_store_path(s, key_b, files[i], 1, to, sizeof to, err);
		CU_ASSERT_EQUAL(link(from, to), 0);
	}
	CU_ASSERT_EQUAL(nb_store_lookup(s, key_b, &sum, err), NB_STORE_CORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "summary.ini"));
	nb_store_close(s);
	tu_rmtree(dir);
	free(dir);
}

static void bad_keys_refused(void)
{
	char err[NB_ERR_LEN], path[4096], *dir;
	nb_store *s = make_store(&dir, key_a);
	static const char *const bad[] = {
	    "",
	    "..",
	    "../../../../etc",
	    "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2001/ad",
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2001 ad",
	};
	nb_model_summary sum;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		CU_ASSERT(nb_store_path(s, bad[i], "log.csv", 1, path,
					sizeof path, err) < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "hex"));
		CU_ASSERT_EQUAL(nb_store_lookup(s, bad[i], &sum, err),
				NB_STORE_ERROR);
		fill_summary(&sum, "ok");
		CU_ASSERT(nb_store_finish(s, bad[i], &sum, err) < 0);
		CU_ASSERT(nb_store_discard(s, bad[i], err) < 0);
	}
	CU_ASSERT(nb_store_path(s, NULL, "x", 0, path, sizeof path, err) < 0);
	/* file names are plain names */
	CU_ASSERT(nb_store_path(s, key_a, "../x", 0, path, sizeof path, err) <
		  0);
	CU_ASSERT(nb_store_path(s, key_a, "..", 0, path, sizeof path, err) < 0);
	CU_ASSERT(nb_store_path(s, key_a, "", 0, path, sizeof path, err) < 0);
	/* nothing outside the store was touched: the artefact is intact */
	CU_ASSERT_EQUAL(nb_store_lookup(s, key_a, &sum, err), NB_STORE_PARTIAL);
	/* summaries hold single-line values and known statuses only */
	fill_summary(&sum, "ok");
	strcpy(sum.desc, "two\nlines");
	CU_ASSERT(nb_store_finish(s, key_a, &sum, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "control character"));
	fill_summary(&sum, "great");
	CU_ASSERT(nb_store_finish(s, key_a, &sum, err) < 0);
	CU_ASSERT_EQUAL(nb_store_lookup(s, key_a, &sum, err), NB_STORE_PARTIAL);
	nb_store_close(s);
	tu_rmtree(dir);
	free(dir);
}

static const nb_test_entry tests[] = {
    {"SHA-256 and keys", keys_and_hashes},
    {"finish, then lookup DONE; diverged without best; discard",
     finish_then_done},
    {"each damaged file is CORRUPT, named", corruption_is_named},
    {"a summary in another key's folder is CORRUPT", summary_of_another_key},
    {"bad keys, names and values are refused", bad_keys_refused},
    {NULL, NULL}};

void nb_test_store(void)
{
	nb_test_add_suite("store", tests);
}
