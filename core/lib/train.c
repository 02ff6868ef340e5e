/*
 * train.c - the training loop and the test pass (see train.h).
 *
 * Accuracy here is sample-weighted (correct / samples). The paper's code
 * averages per-batch accuracies instead, which weighs the last partial test
 * batch more; the difference is a few hundredths of a point.
 *
 * Resumption: with cfg->state_path the loop saves its whole state after
 * every epoch (network, optimiser state, the three random streams, the
 * epoch statistics; see save_state) and a later call with the same
 * configuration continues from it. The data order is shuffled from the
 * identity permutation every epoch, so it depends on the order stream's
 * state alone; with the same thread count a resumed run is bit-identical
 * to an uninterrupted one. With cfg->best_path the best epoch's checkpoint
 * is kept too.
 *
 * Data-free training (cfg->synth): the batches come from a hook (a
 * generator, an image optimiser) instead of the training set; everything
 * else (loss hook, optimiser, schedule, test pass, logs, best checkpoint,
 * state file) is the same. The hook's own state (its generator, optimiser,
 * random streams) joins the state file through cfg->save / cfg->load as
 * "hook.*" tensors, so a data-free run resumes bit-identically too.
 *
 * What it deliberately does not do: progress display (the runner plugs in
 * through the hooks).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <omp.h>

#include "config.h"

#include "checkpoint.h"
#include "error.h"
#include "train.h"

void nb_train_config_default(nb_train_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->epochs = 10;
	cfg->batch = 128;
	cfg->eval_batch = 500;
	cfg->optim = nb_optim_adam_default();
	cfg->sched.kind = NB_SCHED_CONSTANT;
	cfg->sched.base_lr = cfg->optim.lr;
	for (int i = 0; i < 4; i++) {
		cfg->aug.mean[i] = 0.0f;
		cfg->aug.std[i] = 1.0f;
	}
}

static int ce_hook(void *ctx, const nb_batch *b, const float *z, int C,
		   float *dz, nb_loss_terms *terms, char *err)
{
	(void)ctx;
	(void)err;
	double ce = nb_cross_entropy(z, b->y, b->n, C, 0.0f, dz, 1.0f);
	terms->total = terms->ce = ce;
	terms->kl = 0;
	return 0;
}

int nb_evaluate(nb_net *net, const nb_dataset *ds, const nb_augment *aug,
		int batch, int limit, double *acc, double *loss, char *err)
{
	int n = limit > 0 && limit < ds->n ? limit : ds->n;
	int rc = nb_augment_check(ds, aug, err);
	if (rc < 0)
		return rc;
	int oh, ow;
	nb_augment_out_size(ds, aug, &oh, &ow);
	if (batch <= 0)
		batch = 256;
	if (batch > n)
		batch = n;
	size_t per = (size_t)ds->c * oh * ow;
	float *x = malloc((size_t)batch * per * sizeof(float));
	int *y = malloc((size_t)batch * sizeof(int));
	int *idx = malloc((size_t)batch * sizeof(int));
	if (!x || !y || !idx) {
		rc =
		    nb_errorf(err, NB_ENOMEM, "out of memory for a test batch");
		goto out;
	}
	int was_training = nb_net_training(net);
	nb_net_set_training(net, 0);
	int C;
	nb_net_node_shape(net, nb_net_output_node(net), &C, NULL, NULL);
	long correct = 0;
	double ce_sum = 0;
	for (int start = 0; start < n; start += batch) {
		int b = n - start < batch ? n - start : batch;
		for (int i = 0; i < b; i++)
			idx[i] = start + i;
		nb_batch_build(x, y, ds, idx, b, aug, 0, NULL);
		rc = nb_net_forward(net, x, b, err);
		if (rc < 0)
			break;
		const float *z = nb_net_output(net, nb_net_output_node(net));
		correct += nb_count_correct(z, y, b, C);
		ce_sum += nb_cross_entropy(z, y, b, C, 0.0f, NULL, 0.0f) * b;
	}
	nb_net_set_training(net, was_training);
	if (rc == 0) {
		if (acc)
			*acc = 100.0 * (double)correct / n;
		if (loss)
			*loss = ce_sum / n;
	}
out:
	free(x);
	free(y);
	free(idx);
	return rc;
}

static const char *const log_header[] = {
    "epoch",	"lr",	     "loss",	 "ce",	      "kl",	 "train_acc",
    "test_acc", "test_loss", "best_acc", "img_per_s", "epoch_s", "wall_s"};
#define LOG_COLS ((int)(sizeof log_header / sizeof log_header[0]))

static int log_epoch(nb_csv *log, const nb_epoch_stats *s)
{
	char cells[LOG_COLS][32];
	const char *row[LOG_COLS];
	snprintf(cells[0], 32, "%d", s->epoch + 1);
	snprintf(cells[1], 32, "%.6g", s->lr);
	snprintf(cells[2], 32, "%.6f", s->loss);
	snprintf(cells[3], 32, "%.6f", s->ce);
	snprintf(cells[4], 32, "%.6f", s->kl);
	snprintf(cells[5], 32, "%.2f", s->train_acc);
	snprintf(cells[6], 32, "%.2f", s->test_acc);
	snprintf(cells[7], 32, "%.6f", s->test_loss);
	snprintf(cells[8], 32, "%.2f", s->best_acc);
	snprintf(cells[9], 32, "%.1f", s->img_per_s);
	snprintf(cells[10], 32, "%.3f", s->epoch_s);
	snprintf(cells[11], 32, "%.3f", s->wall_s);
	for (int i = 0; i < LOG_COLS; i++)
		row[i] = cells[i];
	return nb_csv_add_row(log, row);
}

/* ---- resumable state --------------------------------------------------------
 *
 * A state file is a safetensors file (see the comment of save_state for what
 * it holds). It is written after the epoch's best checkpoint and log, so a
 * run killed between the three repeats that epoch, which rewrites the same
 * bytes.
 */

#define STATE_FORMAT "nasty-bench-train-state"
#define STATE_VERSION "1"
/* "optim." + a parameter name + ".exp_avg_sq", or "hook." + a bag entry */
#define STATE_NAME_LEN (NB_BAG_NAME_LEN + 16)

/* The columns of the "log.stats" tensor: one F64 row per finished epoch,
 * everything a log row and the epoch hook show. */
enum {
	H_LR,
	H_LOSS,
	H_CE,
	H_KL,
	H_TRAIN_ACC,
	H_TEST_ACC,
	H_TEST_LOSS,
	H_BEST_ACC,
	H_BEST_EPOCH,
	H_IMG_PER_S,
	H_EPOCH_S,
	H_WALL_S,
	H_COLS
};

/* What the loop carries from epoch to epoch besides the network and the
 * optimiser: all of it is in the state file. */
typedef struct run_state {
	int epochs_done;
	int best_epoch; /* 0-based, -1 before the first epoch */
	double best_acc, last_acc;
	nb_loss_terms last;
	double wall_s, train_s, train_imgs; /* summed over resumed runs */
	double *hist;			    /* epochs_done rows of H_COLS */
	int hist_cap;
	nb_rng order, aug;
} run_state;

static int hist_add(run_state *rs, const nb_epoch_stats *s)
{
	if (rs->epochs_done >= rs->hist_cap) {
		int cap = rs->hist_cap ? 2 * rs->hist_cap : 16;
		double *h = realloc(rs->hist, (size_t)cap * H_COLS * sizeof *h);
		if (!h)
			return NB_ENOMEM;
		rs->hist = h;
		rs->hist_cap = cap;
	}
	double *r = rs->hist + (size_t)rs->epochs_done * H_COLS;
	r[H_LR] = s->lr;
	r[H_LOSS] = s->loss;
	r[H_CE] = s->ce;
	r[H_KL] = s->kl;
	r[H_TRAIN_ACC] = s->train_acc;
	r[H_TEST_ACC] = s->test_acc;
	r[H_TEST_LOSS] = s->test_loss;
	r[H_BEST_ACC] = s->best_acc;
	r[H_BEST_EPOCH] = s->best_epoch;
	r[H_IMG_PER_S] = s->img_per_s;
	r[H_EPOCH_S] = s->epoch_s;
	r[H_WALL_S] = s->wall_s;
	return 0;
}

static nb_epoch_stats hist_row(const run_state *rs, int epoch, int epochs)
{
	const double *r = rs->hist + (size_t)epoch * H_COLS;
	nb_epoch_stats s = {0};
	s.epoch = epoch;
	s.epochs = epochs;
	s.lr = (float)r[H_LR];
	s.loss = r[H_LOSS];
	s.ce = r[H_CE];
	s.kl = r[H_KL];
	s.train_acc = r[H_TRAIN_ACC];
	s.test_acc = r[H_TEST_ACC];
	s.test_loss = r[H_TEST_LOSS];
	s.best_acc = r[H_BEST_ACC];
	s.best_epoch = (int)r[H_BEST_EPOCH];
	s.img_per_s = r[H_IMG_PER_S];
	s.epoch_s = r[H_EPOCH_S];
	s.wall_s = r[H_WALL_S];
	return s;
}

/* A stream as I64 [6]: the four state words, has_spare, the spare's bits. */
static void rng_pack(const nb_rng *r, int64_t out[6])
{
	memcpy(out, r->s, sizeof r->s);
	out[4] = r->has_spare;
	memcpy(&out[5], &r->spare, sizeof r->spare);
}

static void rng_unpack(nb_rng *r, const int64_t in[6])
{
	memcpy(r->s, in, sizeof r->s);
	r->has_spare = (int)in[4];
	memcpy(&r->spare, &in[5], sizeof r->spare);
}

/*
 * Everything that must match between the run that wrote a state and the
 * run that resumes it (the epoch count may grow: that is the point). The
 * loss hook cannot be compared: the caller keys its state files by it.
 */
#define N_CFG 8
#define CFG_LEN 512
static const char *const cfg_keys[N_CFG] = {
    "config.train_set",	 "config.test_set", "config.batch",
    "config.eval_batch", "config.seed",	    "config.optim",
    "config.schedule",	 "config.augment"};

static void config_values(char v[N_CFG][CFG_LEN], const nb_train_config *cfg,
			  const nb_optim_config *oc, const nb_schedule *sc,
			  const nb_dataset *train, const nb_dataset *test,
			  int channels)
{
	if (cfg->synth)
		snprintf(v[0], CFG_LEN, "synthetic steps=%d", cfg->synth_steps);
	else
		snprintf(v[0], CFG_LEN, "%s n=%d %dx%dx%d classes=%d",
			 train->name, train->n, train->c, train->h, train->w,
			 train->classes);
	if (test)
		snprintf(v[1], CFG_LEN, "%s n=%d %dx%dx%d classes=%d",
			 test->name, test->n, test->c, test->h, test->w,
			 test->classes);
	else
		snprintf(v[1], CFG_LEN, "none");
	snprintf(v[2], CFG_LEN, "%d", cfg->batch);
	snprintf(v[3], CFG_LEN, "%d", cfg->eval_batch);
	snprintf(v[4], CFG_LEN, "%llu", (unsigned long long)cfg->seed);
	if (oc->kind == NB_OPTIM_SGD)
		snprintf(v[5], CFG_LEN,
			 "sgd lr=%.9g wd=%.9g momentum=%.9g dampening=%.9g "
			 "nesterov=%d",
			 oc->lr, oc->weight_decay, oc->momentum, oc->dampening,
			 oc->nesterov);
	else
		snprintf(v[5], CFG_LEN,
			 "adam lr=%.9g wd=%.9g betas=%.9g,%.9g eps=%.9g",
			 oc->lr, oc->weight_decay, oc->beta1, oc->beta2,
			 oc->eps);
	int len = snprintf(v[6], CFG_LEN,
			   "kind=%d base=%.9g gamma=%.9g t_max=%d eta_min=%.9g "
			   "milestones=",
			   (int)sc->kind, sc->base_lr, sc->gamma, sc->t_max,
			   sc->eta_min);
	for (int i = 0; i < sc->n_milestones && i < NB_SCHED_MAX_MILESTONES &&
			len < CFG_LEN;
	     i++)
		len += snprintf(v[6] + len, CFG_LEN - len, "%s%d", i ? "," : "",
				sc->milestones[i]);
	len = snprintf(v[7], CFG_LEN, "pad_to=%d crop_pad=%d flip=%d rotate=%.9g",
		       cfg->aug.pad_to, cfg->aug.crop_pad, cfg->aug.flip,
		       cfg->aug.rotate_deg);
	for (int c = 0; c < channels && c < 4 && len < CFG_LEN; c++)
		len += snprintf(v[7] + len, CFG_LEN - len,
				" mean%d=%.9g std%d=%.9g", c, cfg->aug.mean[c],
				c, cfg->aug.std[c]);
}

/*
 * Writes the state after rs->epochs_done epochs. The file holds:
 *  - "model.<name>": every parameter and buffer (F32), and every
 *    "model.<bn>.num_batches_tracked" (I64 scalar);
 *  - "optim.<param>.momentum_buffer" (SGD) or "optim.<param>.exp_avg",
 *    ".exp_avg_sq" (F32) and ".step" (I64 scalar) (Adam): the optimiser
 *    state that exists (see nb_optim_export);
 *  - "rng.order", "rng.augment", "rng.dropout": the three streams, I64 [6]
 *    (see rng_pack);
 *  - "log.stats": F64 [epochs, H_COLS], the per-epoch statistics from which
 *    the CSV log is rebuilt;
 *  - "hook.<name>": F32 or I64 [n], the hooks' own state (cfg->save);
 *  - metadata: format, state_version, nasty_bench_version, epochs_done,
 *    best_epoch (0-based), best_acc, last_acc, last_loss, last_ce, last_kl,
 *    wall_s, train_s, train_imgs (doubles as %.17g, exact), threads (for
 *    information: bit-identical resumption needs the same thread count),
 *    and the config.* values of config_values.
 */
static int save_state(const nb_train_config *cfg, nb_net *net, nb_optim *opt,
		      const run_state *rs, char cfgv[N_CFG][CFG_LEN], char *err)
{
	const char *path = cfg->state_path;
	nb_param **params;
	int np = nb_net_params(net, &params);
	nb_counter *counters;
	int nc = nb_net_counters(net, &counters);
	nb_optim_tensor *ot = NULL;
	nb_bag *bag = NULL;
	int no = nb_optim_export(opt, &ot, err);
	if (no < 0)
		return no;
	int rc, nh = 0;
	if (cfg->save) {
		char e2[NB_ERR_LEN];
		bag = nb_bag_new();
		if (!bag) {
			free(ot);
			return nb_errorf(err, NB_ENOMEM, "%s: out of memory",
					 path);
		}
		if ((rc = cfg->save(cfg->state_ctx, bag, e2)) < 0) {
			nb_bag_free(bag);
			free(ot);
			return nb_errorf(err, rc, "%s: saving the hook's state: %s",
					 path, e2);
		}
		nh = nb_bag_count(bag);
	}
	int n_named = np + nc + no + nh;
	nb_st_out *out = calloc((size_t)n_named + 4, sizeof *out);
	char(*names)[STATE_NAME_LEN] =
	    malloc((size_t)(n_named > 0 ? n_named : 1) * sizeof *names);
	if (!out || !names) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
		goto done;
	}
	int n = 0;
	for (int i = 0; i < nh; i++, n++) {
		const char *name;
		int is_i64;
		const void *data;
		size_t cnt;
		nb_bag_entry(bag, i, &name, &is_i64, &data, &cnt);
		snprintf(names[n], STATE_NAME_LEN, "hook.%s", name);
		out[n].name = names[n];
		out[n].dtype = is_i64 ? NB_DTYPE_I64 : NB_DTYPE_F32;
		out[n].ndim = 1;
		out[n].shape[0] = (int64_t)cnt;
		out[n].data = data;
		out[n].nbytes = cnt * (is_i64 ? sizeof(int64_t) : sizeof(float));
	}
	for (int i = 0; i < np; i++, n++) {
		const nb_param *p = params[i];
		snprintf(names[n], STATE_NAME_LEN, "model.%s", p->name);
		out[n].name = names[n];
		out[n].dtype = NB_DTYPE_F32;
		out[n].ndim = p->ndim;
		for (int d = 0; d < p->ndim; d++)
			out[n].shape[d] = p->shape[d];
		out[n].data = p->data;
		out[n].nbytes = p->size * sizeof(float);
	}
	for (int i = 0; i < nc; i++, n++) {
		snprintf(names[n], STATE_NAME_LEN, "model.%s",
			 counters[i].name);
		out[n].name = names[n];
		out[n].dtype = NB_DTYPE_I64;
		out[n].data = &counters[i].value;
		out[n].nbytes = sizeof(int64_t);
	}
	for (int i = 0; i < no; i++, n++) {
		snprintf(names[n], STATE_NAME_LEN, "optim.%s", ot[i].name);
		out[n].name = names[n];
		if (ot[i].is_step) {
			out[n].dtype = NB_DTYPE_I64;
			out[n].data = &ot[i].step;
			out[n].nbytes = sizeof(int64_t);
		} else {
			out[n].dtype = NB_DTYPE_F32;
			out[n].ndim = 1;
			out[n].shape[0] = (int64_t)ot[i].size;
			out[n].data = ot[i].data;
			out[n].nbytes = ot[i].size * sizeof(float);
		}
	}
	int64_t rngs[3][6];
	rng_pack(&rs->order, rngs[0]);
	rng_pack(&rs->aug, rngs[1]);
	rng_pack(nb_net_dropout_rng(net), rngs[2]);
	static const char *const rng_names[3] = {"rng.order", "rng.augment",
						 "rng.dropout"};
	for (int i = 0; i < 3; i++, n++) {
		out[n].name = rng_names[i];
		out[n].dtype = NB_DTYPE_I64;
		out[n].ndim = 1;
		out[n].shape[0] = 6;
		out[n].data = rngs[i];
		out[n].nbytes = sizeof rngs[i];
	}
	static const double none = 0;
	out[n].name = "log.stats";
	out[n].dtype = NB_DTYPE_F64;
	out[n].ndim = 2;
	out[n].shape[0] = rs->epochs_done;
	out[n].shape[1] = H_COLS;
	out[n].data = rs->hist ? (const void *)rs->hist : &none;
	out[n].nbytes = (size_t)rs->epochs_done * H_COLS * sizeof(double);
	n++;

	enum { M_FIXED = 16 };
	char v[M_FIXED][40];
	const char *keys[M_FIXED + N_CFG], *vals[M_FIXED + N_CFG];
	int m = 0;
#define META_S(k, s) (keys[m] = (k), vals[m++] = (s))
#define META_F(k, fmt, x)                                                      \
	(snprintf(v[m], sizeof v[m], fmt, x), keys[m] = (k), vals[m] = v[m],   \
	 m++)
	META_S("format", STATE_FORMAT);
	META_S("state_version", STATE_VERSION);
	META_S("nasty_bench_version", PACKAGE_VERSION);
	META_F("epochs_done", "%d", rs->epochs_done);
	META_F("best_epoch", "%d", rs->best_epoch);
	META_F("best_acc", "%.17g", rs->best_acc);
	META_F("last_acc", "%.17g", rs->last_acc);
	META_F("last_loss", "%.17g", rs->last.total);
	META_F("last_ce", "%.17g", rs->last.ce);
	META_F("last_kl", "%.17g", rs->last.kl);
	META_F("wall_s", "%.17g", rs->wall_s);
	META_F("train_s", "%.17g", rs->train_s);
	META_F("train_imgs", "%.17g", rs->train_imgs);
	META_F("threads", "%d", omp_get_max_threads());
#undef META_S
#undef META_F
	for (int i = 0; i < N_CFG; i++, m++) {
		keys[m] = cfg_keys[i];
		vals[m] = cfgv[i];
	}
	rc = nb_st_write(path, out, n, keys, vals, m, err);
done:
	free(out);
	free(names);
	free(ot);
	nb_bag_free(bag);
	return rc;
}

/* A one-line error about a state file that cannot be resumed. */
__attribute__((format(printf, 3, 4))) static int
bad_state(char *err, const char *path, const char *fmt, ...)
{
	char msg[NB_ERR_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return nb_errorf(err, NB_EFORMAT,
			 "%s: cannot resume: %s (remove the file to train from "
			 "the start)",
			 path, msg);
}

static int meta_double(const nb_st_file *f, const char *key, double *out)
{
	const char *v = nb_st_meta(f, key);
	char *end;
	if (!v || !*v)
		return -1;
	*out = strtod(v, &end);
	return *end ? -1 : 0;
}

static int meta_int(const nb_st_file *f, const char *key, int lo, int hi,
		    int *out)
{
	const char *v = nb_st_meta(f, key);
	char *end;
	if (!v || !*v)
		return -1;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (*end || errno || x < lo || x > hi)
		return -1;
	*out = (int)x;
	return 0;
}

static int same_shape(const nb_st_tensor *t, const nb_param *p)
{
	if (t->ndim != p->ndim)
		return 0;
	for (int d = 0; d < p->ndim; d++)
		if (t->shape[d] != p->shape[d])
			return 0;
	return 1;
}

static int is_scalar_i64(const nb_st_tensor *t)
{
	return t->dtype == NB_DTYPE_I64 && t->ndim == 0;
}

/*
 * Restores a state file into net, opt and rs. Returns 0 when there is no
 * file, 1 when resumed, or a negative code naming the file. Nothing is
 * changed unless the whole file is good (the file's layout, the network's
 * names and shapes, the configuration, the optimiser state).
 */
static int load_state(const nb_train_config *cfg, nb_net *net, nb_optim *opt,
		      run_state *rs, char cfgv[N_CFG][CFG_LEN], char *err)
{
	const char *path = cfg->state_path;
	struct stat stt;
	if (stat(path, &stt) != 0) {
		if (errno == ENOENT)
			return 0;
		return nb_errorf(err, NB_EIO, "%s: %s", path, strerror(errno));
	}
	nb_st_file *f;
	int rc = nb_st_read(path, 0, &f, err);
	if (rc < 0)
		return rc;
	nb_param **params;
	int np = nb_net_params(net, &params);
	nb_counter *counters;
	int nc = nb_net_counters(net, &counters);
	nb_optim_tensor *ot = calloc((size_t)nb_st_count(f) + 1, sizeof *ot);
	const nb_st_tensor **model =
	    calloc((size_t)(np + nc) + 1, sizeof *model);
	const nb_st_tensor *rng_t[3] = {NULL, NULL, NULL}, *log_t = NULL;
	double *hist = NULL;
	int no = 0;
	run_state r = *rs;
	nb_bag *bag = cfg->load ? nb_bag_new() : NULL;
	if (!ot || !model || (cfg->load && !bag)) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
		goto out;
	}

	/* what the file is */
	const char *fmt = nb_st_meta(f, "format");
	if (!fmt || strcmp(fmt, STATE_FORMAT)) {
		rc = bad_state(err, path, "not a training state (format '%s')",
			       fmt ? fmt : "missing");
		goto out;
	}
	const char *ver = nb_st_meta(f, "state_version");
	if (!ver || strcmp(ver, STATE_VERSION)) {
		rc = bad_state(err, path, "state version '%s', expected %s",
			       ver ? ver : "missing", STATE_VERSION);
		goto out;
	}
	for (int i = 0; i < N_CFG; i++) {
		const char *v = nb_st_meta(f, cfg_keys[i]);
		if (!v || strcmp(v, cfgv[i])) {
			rc = bad_state(err, path,
				       "it was trained with %s '%s' but this "
				       "run has '%s'",
				       cfg_keys[i] + 7, v ? v : "missing",
				       cfgv[i]);
			goto out;
		}
	}
	if (meta_int(f, "epochs_done", 1, INT_MAX, &r.epochs_done) < 0 ||
	    meta_int(f, "best_epoch", 0, r.epochs_done - 1, &r.best_epoch) <
		0 ||
	    meta_double(f, "best_acc", &r.best_acc) < 0 ||
	    meta_double(f, "last_acc", &r.last_acc) < 0 ||
	    meta_double(f, "last_loss", &r.last.total) < 0 ||
	    meta_double(f, "last_ce", &r.last.ce) < 0 ||
	    meta_double(f, "last_kl", &r.last.kl) < 0 ||
	    meta_double(f, "wall_s", &r.wall_s) < 0 ||
	    meta_double(f, "train_s", &r.train_s) < 0 ||
	    meta_double(f, "train_imgs", &r.train_imgs) < 0) {
		rc = bad_state(err, path,
			       "epochs_done, best_epoch or an accuracy, loss "
			       "or time in its metadata is missing or "
			       "malformed");
		goto out;
	}
	if (r.epochs_done > cfg->epochs) {
		rc = bad_state(err, path,
			       "it holds %d finished epochs but this run asks "
			       "for %d",
			       r.epochs_done, cfg->epochs);
		goto out;
	}

	/* every tensor, by kind */
	for (int i = 0; i < nb_st_count(f); i++) {
		const nb_st_tensor *t = nb_st_get(f, i);
		char shape[160];
		nb_st_format_shape(shape, sizeof shape, t->shape, t->ndim);
		if (!strncmp(t->name, "model.", 6)) {
			const char *name = t->name + 6;
			int k = -1;
			for (int j = 0; j < np && k < 0; j++)
				if (!strcmp(params[j]->name, name))
					k = j;
			for (int j = 0; j < nc && k < 0; j++)
				if (!strcmp(counters[j].name, name))
					k = np + j;
			if (k < 0) {
				rc =
				    bad_state(err, path,
					      "tensor '%s': the network has no "
					      "'%s' (another architecture?)",
					      t->name, name);
				goto out;
			}
			if (k < np ? t->dtype != NB_DTYPE_F32 ||
					 !same_shape(t, params[k])
				   : !is_scalar_i64(t)) {
				rc = bad_state(err, path,
					       "tensor '%s' is %s %s, not what "
					       "the network has (another "
					       "architecture?)",
					       t->name, nb_dtype_name(t->dtype),
					       shape);
				goto out;
			}
			model[k] = t;
		} else if (!strncmp(t->name, "optim.", 6)) {
			nb_optim_tensor *o = &ot[no++];
			snprintf(o->name, sizeof o->name, "%s", t->name + 6);
			if (is_scalar_i64(t)) {
				o->is_step = 1;
				memcpy(&o->step, t->data, sizeof o->step);
			} else if (t->dtype == NB_DTYPE_F32 && t->ndim == 1) {
				o->data = t->data;
				o->size = (size_t)t->shape[0];
			} else {
				rc = bad_state(err, path,
					       "tensor '%s' is %s %s, neither "
					       "F32 [n] nor an I64 scalar",
					       t->name, nb_dtype_name(t->dtype),
					       shape);
				goto out;
			}
		} else if (!strncmp(t->name, "rng.", 4)) {
			static const char *const kinds[3] = {"order", "augment",
							     "dropout"};
			int k = -1;
			for (int j = 0; j < 3; j++)
				if (!strcmp(t->name + 4, kinds[j]))
					k = j;
			if (k < 0 || t->dtype != NB_DTYPE_I64 || t->ndim != 1 ||
			    t->shape[0] != 6) {
				rc = bad_state(err, path,
					       "tensor '%s' (%s %s) is not a "
					       "random stream",
					       t->name, nb_dtype_name(t->dtype),
					       shape);
				goto out;
			}
			rng_t[k] = t;
		} else if (bag && !strncmp(t->name, "hook.", 5)) {
			char e2[NB_ERR_LEN];
			int r2;
			if (t->dtype == NB_DTYPE_F32 && t->ndim == 1)
				r2 = nb_bag_put_f32(bag, t->name + 5, t->data,
						    (size_t)t->shape[0], e2);
			else if (t->dtype == NB_DTYPE_I64 && t->ndim == 1)
				r2 = nb_bag_put_i64(bag, t->name + 5, t->data,
						    (size_t)t->shape[0], e2);
			else
				r2 = nb_errorf(e2, NB_EFORMAT,
					       "tensor '%s' is %s %s, neither "
					       "F32 [n] nor I64 [n]",
					       t->name, nb_dtype_name(t->dtype),
					       shape);
			if (r2 < 0) {
				rc = bad_state(err, path, "%s", e2);
				goto out;
			}
		} else if (!strcmp(t->name, "log.stats")) {
			if (t->dtype != NB_DTYPE_F64 || t->ndim != 2 ||
			    t->shape[0] != r.epochs_done ||
			    t->shape[1] != H_COLS) {
				rc = bad_state(err, path,
					       "tensor 'log.stats' is %s %s, "
					       "expected F64 [%d,%d]",
					       nb_dtype_name(t->dtype), shape,
					       r.epochs_done, H_COLS);
				goto out;
			}
			log_t = t;
		} else {
			rc = bad_state(err, path, "unexpected tensor '%s'",
				       t->name);
			goto out;
		}
	}
	for (int k = 0; k < np + nc; k++)
		if (!model[k]) {
			rc = bad_state(err, path,
				       "tensor 'model.%s' is missing (another "
				       "architecture?)",
				       k < np ? params[k]->name
					      : counters[k - np].name);
			goto out;
		}
	for (int k = 0; k < 3; k++)
		if (!rng_t[k]) {
			rc = bad_state(err, path,
				       "a random stream is missing (rng.order, "
				       "rng.augment, rng.dropout)");
			goto out;
		}
	if (!log_t) {
		rc = bad_state(err, path, "tensor 'log.stats' is missing");
		goto out;
	}
	int64_t words[3][6];
	for (int k = 0; k < 3; k++) {
		memcpy(words[k], rng_t[k]->data, sizeof words[k]);
		if (words[k][4] != 0 && words[k][4] != 1) {
			rc = bad_state(err, path,
				       "tensor '%s' is not a random stream",
				       rng_t[k]->name);
			goto out;
		}
	}
	/* the best checkpoint must be there, from the best epoch or (after a
	 * kill between the two writes) from the epoch being repeated */
	if (cfg->best_path) {
		nb_ckpt_meta bm;
		char e2[NB_ERR_LEN];
		if (nb_checkpoint_read_meta(cfg->best_path, &bm, e2) < 0) {
			rc = bad_state(err, path,
				       "its best epoch's checkpoint is "
				       "unreadable: %s",
				       e2);
			goto out;
		}
		if (bm.epochs < r.best_epoch + 1 ||
		    bm.epochs > r.epochs_done + 1) {
			rc = bad_state(err, path,
				       "%s is from epoch %d, but the best "
				       "epoch is %d",
				       cfg->best_path, bm.epochs,
				       r.best_epoch + 1);
			goto out;
		}
	}
	r.hist_cap = r.epochs_done;
	hist = malloc((size_t)r.epochs_done * H_COLS * sizeof *hist);
	if (!hist) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	memcpy(hist, log_t->data, log_t->nbytes);
	/* the hooks' own state: restored into the hooks, which the run leaves
	 * behind when anything fails from here */
	char e2[NB_ERR_LEN];
	if (bag) {
		if (cfg->load(cfg->state_ctx, bag, e2) < 0) {
			rc = bad_state(err, path, "the hook's state: %s", e2);
			goto out;
		}
		const char *unread = nb_bag_unread(bag);
		if (unread) {
			rc = bad_state(err, path,
				       "unexpected tensor 'hook.%s' (a state "
				       "of another version of the hook?)",
				       unread);
			goto out;
		}
	}
	/* the last check, which replaces the optimiser state when good */
	if (nb_optim_import(opt, ot, no, e2) < 0) {
		rc = bad_state(err, path, "%s", e2);
		goto out;
	}

	/* all good: copy */
	for (int k = 0; k < np; k++)
		memcpy(params[k]->data, model[k]->data, model[k]->nbytes);
	for (int k = 0; k < nc; k++)
		memcpy(&counters[k].value, model[np + k]->data,
		       sizeof counters[k].value);
	rng_unpack(&r.order, words[0]);
	rng_unpack(&r.aug, words[1]);
	rng_unpack(nb_net_dropout_rng(net), words[2]);
	free(rs->hist);
	r.hist = hist;
	hist = NULL;
	*rs = r;
	rc = 1;
out:
	free(hist);
	free(ot);
	free(model);
	nb_bag_free(bag);
	nb_st_close(f);
	return rc;
}

/* Saves the best epoch's checkpoint with the caller's metadata. */
static int save_best(const nb_train_config *cfg, const nb_net *net, int epoch,
		     double acc, char *err)
{
	nb_ckpt_meta meta;
	if (cfg->best_meta)
		meta = *cfg->best_meta;
	else
		memset(&meta, 0, sizeof meta);
	meta.epochs = epoch + 1;
	meta.best_acc = acc;
	return nb_checkpoint_save(net, &meta, cfg->best_path, err);
}

/* ---- the loop
 * ---------------------------------------------------------------- */

/* One synthetic batch from cfg->synth, with its labels checked. */
static int synth_batch(const nb_train_config *cfg, int epoch, int step, int n,
		       int C, float *x, int *y, char *err)
{
	char e2[NB_ERR_LEN];
	int rc = cfg->synth(cfg->synth_ctx, epoch, step, n, x, y, e2);
	if (rc < 0)
		return nb_errorf(err, rc, "synthetic batch %d of epoch %d: %s",
				 step + 1, epoch + 1, e2);
	for (int i = 0; i < n; i++)
		if (y[i] < -1 || y[i] >= C)
			return nb_errorf(err, NB_EINVAL,
					 "synthetic batch %d of epoch %d: label "
					 "%d of sample %d is outside -1..%d",
					 step + 1, epoch + 1, y[i], i, C - 1);
	return 0;
}

/* Adds the correct predictions among the labelled rows (label >= 0). */
static void count_labelled(const float *z, const int *y, int b, int C,
			   long *correct, long *labelled)
{
	for (int i = 0; i < b; i++) {
		if (y[i] < 0)
			continue;
		(*labelled)++;
		*correct += nb_count_correct(z + (size_t)i * C, y + i, 1, C);
	}
}

int nb_train(nb_net *net, const nb_dataset *train, const nb_dataset *test,
	     const nb_train_config *cfg, nb_train_result *res, char *err)
{
	memset(res, 0, sizeof *res);
	res->best_epoch = -1;
	if (cfg->epochs < 0 || cfg->batch <= 0)
		return nb_errorf(err, NB_EINVAL, "bad epochs %d / batch %d",
				 cfg->epochs, cfg->batch);
	const int synth = cfg->synth != NULL;
	if (synth && (cfg->synth_steps <= 0 || !cfg->loss))
		return nb_errorf(err, NB_EINVAL,
				 "synthetic training needs steps > 0 (got %d) "
				 "and a loss hook",
				 cfg->synth_steps);
	if (!synth && (!train || train->n < 2))
		return nb_errorf(err, NB_EINVAL,
				 "training set '%s' has %d samples",
				 train ? train->name : "(none)",
				 train ? train->n : 0);
	/* the data that defines the input shape: the training set, or the
	 * test set when the batches are synthetic */
	const nb_dataset *shape_ds = synth ? test : train;
	int rc = shape_ds ? nb_augment_check(shape_ds, &cfg->aug, err) : 0;
	if (rc < 0)
		return rc;
	int C, c_in, h_in, w_in, oh, ow;
	nb_net_node_shape(net, nb_net_output_node(net), &C, NULL, NULL);
	nb_net_node_shape(net, 0, &c_in, &h_in, &w_in);
	if (shape_ds) {
		nb_augment_out_size(shape_ds, &cfg->aug, &oh, &ow);
		if (c_in != shape_ds->c || h_in != oh || w_in != ow)
			return nb_errorf(err, NB_EINVAL,
					 "the model takes %dx%dx%d inputs but "
					 "'%s' batches are %dx%dx%d",
					 c_in, h_in, w_in, shape_ds->name,
					 shape_ds->c, oh, ow);
		if (C < shape_ds->classes)
			return nb_errorf(err, NB_EINVAL,
					 "the model has %d outputs but '%s' "
					 "has %d classes",
					 C, shape_ds->name, shape_ds->classes);
	}
	oh = h_in;
	ow = w_in;

	int B = synth || cfg->batch < train->n ? cfg->batch : train->n;
	size_t per = (size_t)c_in * oh * ow;
	float *x = malloc((size_t)B * per * sizeof(float));
	int *y = malloc((size_t)B * sizeof(int));
	int *order = malloc((size_t)(synth ? 1 : train->n) * sizeof(int));
	nb_param **params;
	int n_params = nb_net_params(net, &params);
	nb_csv *log = cfg->log_csv ? nb_csv_new(log_header, LOG_COLS) : NULL;
	nb_optim *opt = NULL;
	run_state rs;
	memset(&rs, 0, sizeof rs);
	rs.best_epoch = -1;
	if (!x || !y || !order || (cfg->log_csv && !log)) {
		rc = nb_errorf(err, NB_ENOMEM, "out of memory for training");
		goto out;
	}
	nb_optim_config oc = cfg->optim;
	if (cfg->sched.base_lr > 0)
		oc.lr = cfg->sched.base_lr;
	opt = nb_optim_new(&oc, params, n_params, err);
	if (!opt) {
		rc = NB_ENOMEM;
		goto out;
	}
	nb_schedule sched = cfg->sched;
	if (!(sched.base_lr > 0))
		sched.base_lr = oc.lr;

	nb_rng_seed(&rs.order, cfg->seed, NB_RNG_ORDER);
	nb_rng_seed(&rs.aug, cfg->seed, NB_RNG_AUGMENT);
	nb_net_seed_dropout(net, cfg->seed);
	nb_loss_hook hook = cfg->loss ? cfg->loss : ce_hook;

	char(*cv)[CFG_LEN] = malloc(N_CFG * sizeof *cv);
	if (!cv) {
		rc = nb_errorf(err, NB_ENOMEM, "out of memory for training");
		goto out;
	}
	config_values(cv, cfg, &oc, &sched, train, test, c_in);
	if (cfg->state_path &&
	    (rc = load_state(cfg, net, opt, &rs, cv, err)) < 0) {
		free(cv);
		goto out;
	}
	rc = 0;
	if (rs.epochs_done > 0) {
		res->resumed_from = rs.epochs_done;
		res->epochs_done = rs.epochs_done;
		res->best_acc = rs.best_acc;
		res->best_epoch = rs.best_epoch;
		res->last_acc = rs.last_acc;
		res->last = rs.last;
		if (log) {
			for (int e = 0; e < rs.epochs_done; e++) {
				nb_epoch_stats s =
				    hist_row(&rs, e, cfg->epochs);
				if (log_epoch(log, &s) < 0) {
					rc = nb_errorf(err, NB_ENOMEM,
						       "out of memory");
					break;
				}
			}
			if (rc == 0)
				rc = nb_csv_write(log, cfg->log_csv, err);
			if (rc < 0) {
				free(cv);
				goto out;
			}
		}
	}

	double t0 = omp_get_wtime();
	const double wall_before = rs.wall_s;
	int steps;
	if (synth) {
		steps = cfg->synth_steps;
	} else {
		steps = (train->n + B - 1) / B;
		if (train->n % B == 1)
			steps--; /* a one-sample batch breaks BatchNorm
				    statistics */
	}

	for (int epoch = rs.epochs_done; epoch < cfg->epochs; epoch++) {
		double te = omp_get_wtime();
		float lr = nb_schedule_lr(&sched, epoch);
		nb_optim_set_lr(opt, lr);
		/* from the identity every epoch, so the order depends on the
		 * stream's state alone (which a state file restores) */
		if (!synth) {
			for (int i = 0; i < train->n; i++)
				order[i] = i;
			nb_rng_shuffle(&rs.order, order, train->n);
		}
		nb_net_set_training(net, 1);
		double sum_loss = 0, sum_ce = 0, sum_kl = 0;
		long correct = 0, seen = 0, labelled = 0;
		for (int step = 0; step < steps; step++) {
			int b;
			if (synth) {
				b = B;
				rc = synth_batch(cfg, epoch, step, b, C, x, y,
						 err);
				if (rc < 0)
					break;
			} else {
				int start = step * B;
				b = train->n - start < B ? train->n - start : B;
				nb_batch_build(x, y, train, order + start, b,
					       &cfg->aug, 1, &rs.aug);
			}
			rc = nb_net_forward(net, x, b, err);
			if (rc < 0)
				break;
			int out_node = nb_net_output_node(net);
			const float *z = nb_net_output(net, out_node);
			float *dz = nb_net_grad(net, out_node);
			if (!dz) {
				rc = nb_errorf(err, NB_ENOMEM,
					       "out of memory for gradients");
				break;
			}
			nb_batch bt = {x, y, b, epoch, step};
			nb_loss_terms terms = {0, 0, 0};
			rc = hook(cfg->loss_ctx, &bt, z, C, dz, &terms, err);
			if (rc < 0)
				break;
			if (!isfinite(terms.total) ||
			    !nb_all_finite(z, (long)b * C)) {
				res->diverged = 1;
				break;
			}
			count_labelled(z, y, b, C, &correct, &labelled);
			seen += b;
			sum_loss += terms.total;
			sum_ce += terms.ce;
			sum_kl += terms.kl;
			nb_optim_zero_grad(opt);
			rc = nb_net_backward(net, NULL, err);
			if (rc < 0)
				break;
			rc = nb_optim_step(opt);
			if (rc < 0) {
				rc = nb_errorf(err, rc,
					       "optimiser: out of memory");
				break;
			}
			if (cfg->on_step)
				cfg->on_step(cfg->hook_ctx, epoch, step, steps,
					     sum_loss / (step + 1));
		}
		if (rc < 0)
			break;
		double t_train = omp_get_wtime() - te;
		if (res->diverged)
			break;
		rs.train_s += t_train;
		rs.train_imgs += seen;

		nb_epoch_stats s = {0};
		s.epoch = epoch;
		s.epochs = cfg->epochs;
		s.lr = lr;
		s.loss = sum_loss / steps;
		s.ce = sum_ce / steps;
		s.kl = sum_kl / steps;
		s.train_acc = labelled ? 100.0 * correct / labelled : 0;
		s.img_per_s = t_train > 0 ? seen / t_train : 0;
		if (test) {
			rc = nb_evaluate(net, test, &cfg->aug, cfg->eval_batch,
					 0, &s.test_acc, &s.test_loss, err);
			if (rc < 0)
				break;
		}
		/* ties go to the later epoch, as the paper's checkpointing */
		int best = s.test_acc >= rs.best_acc || rs.best_epoch < 0;
		if (best) {
			rs.best_acc = s.test_acc;
			rs.best_epoch = epoch;
		}
		rs.last_acc = s.test_acc;
		rs.last.total = s.loss;
		rs.last.ce = s.ce;
		rs.last.kl = s.kl;
		s.best_acc = rs.best_acc;
		s.best_epoch = rs.best_epoch;
		s.epoch_s = omp_get_wtime() - te;
		rs.wall_s = wall_before + (omp_get_wtime() - t0);
		s.wall_s = rs.wall_s;
		if (hist_add(&rs, &s) < 0) {
			rc = nb_errorf(err, NB_ENOMEM, "out of memory");
			break;
		}
		rs.epochs_done = epoch + 1;
		res->best_acc = rs.best_acc;
		res->best_epoch = rs.best_epoch;
		res->last_acc = rs.last_acc;
		res->epochs_done = rs.epochs_done;
		res->last = rs.last;
		/* best, then log, then state: see "resumable state" above */
		if (best && cfg->best_path &&
		    (rc = save_best(cfg, net, epoch, s.test_acc, err)) < 0)
			break;
		if (log) {
			if (log_epoch(log, &s) < 0) {
				rc = nb_errorf(err, NB_ENOMEM, "out of memory");
				break;
			}
			rc = nb_csv_write(log, cfg->log_csv, err);
			if (rc < 0)
				break;
		}
		if (cfg->state_path && (rc = save_state(cfg, net, opt, &rs, cv, err)) < 0)
			break;
		if (cfg->on_epoch)
			cfg->on_epoch(cfg->hook_ctx, &s);
	}
	free(cv);
	if (rc < 0)
		goto out;
	rs.wall_s = wall_before + (omp_get_wtime() - t0);
	res->wall_s = rs.wall_s;
	res->img_per_s = rs.train_s > 0 ? rs.train_imgs / rs.train_s : 0;
out:
	nb_optim_free(opt);
	nb_csv_free(log);
	free(rs.hist);
	free(x);
	free(y);
	free(order);
	return rc;
}
