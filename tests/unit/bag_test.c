/*
 * bag_test.c - a hook's resumable state as named tensors (core/lib/bag.c):
 * floats, integers, a network, an optimiser and a random stream go in and
 * come back bit for bit; bad names, duplicates, missing entries, wrong
 * types and sizes are errors naming the entry; unread entries are
 * reported.
 */
#include <stdlib.h>
#include <string.h>

#include "bag.h"
#include "error.h"
#include "testutil.h"

static nb_net *small_net(uint64_t seed)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(2, 4, 4);
	int x = nb_net_add_conv2d(net, 0, "conv", 3, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 5, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, seed, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	return net;
}

/* The same bag entries, as a file hands them back: copies of the data. */
static nb_bag *reread(const nb_bag *b, void ***keep, int *nkeep)
{
	char err[NB_ERR_LEN];
	nb_bag *r = nb_bag_new();
	*nkeep = nb_bag_count(b);
	*keep = calloc((size_t)*nkeep + 1, sizeof **keep);
	for (int i = 0; i < nb_bag_count(b); i++) {
		const char *name;
		int is_i64;
		const void *data;
		size_t n;
		nb_bag_entry(b, i, &name, &is_i64, &data, &n);
		size_t bytes = n * (is_i64 ? sizeof(int64_t) : sizeof(float));
		(*keep)[i] = malloc(bytes ? bytes : 1);
		memcpy((*keep)[i], data, bytes);
		if (is_i64)
			nb_bag_put_i64(r, name, (*keep)[i], n, err);
		else
			nb_bag_put_f32(r, name, (*keep)[i], n, err);
	}
	return r;
}

static void round_trip(void)
{
	char err[NB_ERR_LEN];
	nb_net *a = small_net(1), *b = small_net(2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	/* one Adam step on a, so its optimiser has state */
	nb_param **params;
	int np = nb_net_params(a, &params);
	nb_optim_config oc = nb_optim_adam_default();
	nb_optim *oa = nb_optim_new(&oc, params, np, err);
	float x[3 * 32];
	tu_fill_normal(x, 96, 1.0f, 5);
	nb_net_set_training(a, 1);
	CU_ASSERT_EQUAL_FATAL(nb_net_forward(a, x, 3, err), 0);
	float *d = nb_net_grad(a, nb_net_output_node(a));
	for (int i = 0; i < 15; i++)
		d[i] = 0.1f * (float)(i % 4);
	nb_optim_zero_grad(oa);
	CU_ASSERT_EQUAL(nb_net_backward(a, NULL, err), 0);
	CU_ASSERT_EQUAL(nb_optim_step(oa), 0);
	nb_rng r1, r2;
	nb_rng_seed(&r1, 3, NB_RNG_NOISE);
	nb_rng_normal(&r1); /* leaves a Box-Muller spare */
	float fl[3] = {1.5f, -2, 0.25f};
	int64_t in[2] = {7, -9};

	nb_bag *bag = nb_bag_new();
	CU_ASSERT_EQUAL(nb_bag_put_net(bag, "gen", a, err), 0);
	CU_ASSERT_EQUAL(nb_bag_put_optim(bag, "gen_optim", oa, err), 0);
	CU_ASSERT_EQUAL(nb_bag_put_rng(bag, "noise", &r1, err), 0);
	CU_ASSERT_EQUAL(nb_bag_put_f32(bag, "pool", fl, 3, err), 0);
	CU_ASSERT_EQUAL(nb_bag_put_i64(bag, "counts", in, 2, err), 0);
	/* conv w,b; bn w,b,mean,var; fc w,b; the bn counter; 3 pieces of
	 * Adam state for each of the 6 weights; the stream; 2 more */
	CU_ASSERT_EQUAL(nb_bag_count(bag), 9 + 18 + 1 + 2);
	/* a duplicate and bad names are refused */
	CU_ASSERT_EQUAL(nb_bag_put_f32(bag, "pool", fl, 3, err), NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "'pool' is put twice"));
	CU_ASSERT_EQUAL(nb_bag_put_f32(bag, "a b", fl, 3, err), NB_EINVAL);
	CU_ASSERT_EQUAL(nb_bag_put_f32(bag, "", fl, 3, err), NB_EINVAL);

	void **keep;
	int nkeep;
	nb_bag *back = reread(bag, &keep, &nkeep);
	/* b, a fresh optimiser, a fresh stream take it all back */
	nb_param **pb;
	int npb = nb_net_params(b, &pb);
	nb_optim *ob = nb_optim_new(&oc, pb, npb, err);
	float fl2[3];
	int64_t in2[2];
	CU_ASSERT_PTR_NOT_NULL(nb_bag_unread(back));
	CU_ASSERT_EQUAL(nb_bag_get_net(back, "gen", b, err), 0);
	CU_ASSERT_EQUAL(nb_bag_get_optim(back, "gen_optim", ob, err), 0);
	CU_ASSERT_EQUAL(nb_bag_get_rng(back, "noise", &r2, err), 0);
	CU_ASSERT_EQUAL(nb_bag_get_f32(back, "pool", fl2, 3, err), 0);
	CU_ASSERT_EQUAL(nb_bag_get_i64(back, "counts", in2, 2, err), 0);
	CU_ASSERT_PTR_NULL(nb_bag_unread(back));
	for (int i = 0; i < np; i++)
		CU_ASSERT(memcmp(params[i]->data, pb[i]->data,
				 params[i]->size * sizeof(float)) == 0);
	nb_counter *ca, *cb;
	int nc = nb_net_counters(a, &ca);
	nb_net_counters(b, &cb);
	for (int i = 0; i < nc; i++)
		CU_ASSERT_EQUAL(ca[i].value, cb[i].value);
	CU_ASSERT(memcmp(fl, fl2, sizeof fl) == 0);
	CU_ASSERT(memcmp(in, in2, sizeof in) == 0);
	/* the streams continue alike, spare included */
	for (int i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(nb_rng_normal(&r1), nb_rng_normal(&r2));
	/* and the optimisers take the same next step */
	CU_ASSERT_EQUAL(nb_optim_step(oa), 0);
	for (int i = 0; i < np; i++)
		if (pb[i]->grad)
			memcpy(pb[i]->grad, params[i]->grad,
			       params[i]->size * sizeof(float));
	CU_ASSERT_EQUAL(nb_optim_step(ob), 0);
	for (int i = 0; i < np; i++)
		CU_ASSERT(memcmp(params[i]->data, pb[i]->data,
				 params[i]->size * sizeof(float)) == 0);

	/* missing, wrong size, wrong type: errors naming the entry */
	CU_ASSERT_EQUAL(nb_bag_get_f32(back, "nothing", fl2, 3, err),
			NB_EFORMAT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "'nothing' is missing"));
	CU_ASSERT_EQUAL(nb_bag_get_f32(back, "pool", fl2, 2, err), NB_EFORMAT);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(err, "'pool' is F32 [3], expected F32 [2]"));
	CU_ASSERT_EQUAL(nb_bag_get_i64(back, "pool", in2, 3, err), NB_EFORMAT);
	nb_net *other = nb_net_new(2, 4, 4);
	int y = nb_net_add_flatten(other, 0, err);
	y = nb_net_add_linear(other, y, "fc", 7, 1, NB_INIT_DEFAULT, err);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(other, 1, err), 0);
	CU_ASSERT_EQUAL(nb_bag_get_net(back, "gen", other, err), NB_EFORMAT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "gen.fc.weight"));

	/* an entry nobody reads is reported */
	nb_bag *extra = nb_bag_new();
	CU_ASSERT_EQUAL(nb_bag_put_f32(extra, "pool", fl, 3, err), 0);
	CU_ASSERT_EQUAL(nb_bag_put_f32(extra, "old", fl, 1, err), 0);
	CU_ASSERT_EQUAL(nb_bag_get_f32(extra, "pool", fl2, 3, err), 0);
	CU_ASSERT_STRING_EQUAL(nb_bag_unread(extra), "old");

	nb_bag_free(extra);
	nb_net_free(other);
	for (int i = 0; i < nkeep; i++)
		free(keep[i]);
	free(keep);
	nb_bag_free(back);
	nb_bag_free(bag);
	nb_optim_free(oa);
	nb_optim_free(ob);
	nb_net_free(a);
	nb_net_free(b);
}

static const nb_test_entry tests[] = {
    {"state bags: round trip and errors", round_trip}, {NULL, NULL}};

void nb_test_bag(void)
{
	nb_test_add_suite("bag", tests);
}
