/*
 * runner.c - plans a suite's job graph, runs the jobs in child processes in
 * dependency order with live progress, and writes the reports (runner.h).
 *
 * Why processes: a job is a whole training run with its own OpenMP team; a
 * child keeps a crash, a leak or an exhausted allocation to itself, and the
 * parent (which never starts OpenMP, so forking stays safe) only schedules,
 * reads progress lines from pipes and collects the summaries the children
 * leave in the store.
 *
 * What it deliberately does not do: train anything itself, or trust a
 * child's word over the store (a job counts as finished only when its
 * artefact verifies).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Keep cblas.h from pulling in <complex.h> and its macro I. */
#define FORCE_OPENBLAS_COMPLEX_STRUCT
#include <cblas.h>
#include <omp.h>

#include "checkpoint.h"
#include "config.h"
#include "ops.h"
#include "report.h"
#include "runner.h"
#include "runner_mpi.h"
#include "store.h"

/* Bump when the numerics change so that old artefacts are not reused.
 * 2: convolutions on the packed kernels where they are chosen (their sums
 * run in another order than the BLAS's); the kernels are part of the key.
 * 3: small maps in panel products of several images, the input gradient
 * of strided convolutions on the packed kernels, chunks capped by size.
 * 4: rows of 10 to 28 outputs on the implicit kernels in padded rows
 * (LeNet-5's input gradient of its second convolution changes path).
 * 5: BatchNorm's per-channel sums taken per slice of the batch and the
 * slices added up in order.
 * 6: the weight gradient of convolutions with at most 16 output channels
 * on rows of 16 or 32 positions summed with positions on the lanes; on
 * maps under 128 positions, the images of a unit summed in registers
 * before they are added to the chunk's partial; a strided 3x3 input
 * gradient without padding gathered in phase planes before it is added.
 * 7: the weight gradient of depthwise convolutions summed with the
 * channels on the lanes, position after position (dwconv.c); in a generic
 * build the depthwise plane kernels' multiply-adds fused on AVX-512.
 * 8: 3x3 convolutions of stride 1 and padding 1 with whole vectors of up
 * to 128 channels through Winograd's F(2x2, 3x3) (winograd.c); the key
 * names the kernels "winograd" where they run.
 * 9: Winograd's weight gradient with the tiles on the lanes (32- and
 * 16-wide maps, at most 32 channels) summed in four partial sums per
 * weight, a unit's tiles at a time. */
#define NB_NUMERICS_VERSION 9

enum job_state { J_PENDING, J_RUNNING, J_DONE, J_FAILED };

typedef struct job {
	int teacher_role; /* 1 teacher, 0 student */
	char arch[NB_SUITE_NAME];
	const nb_plugin_use *strategy; /* teachers */
	const nb_plugin_use *attack;   /* students; NULL = scratch */
	int dep;                       /* adversary or teacher job, or -1 */
	uint64_t seed;
	int selected;
	char name[256];
	char desc[4096];
	char key[65];
	enum job_state state;
	char why[NB_ERR_LEN]; /* failure reason */
	nb_model_summary sum;
	double cost;          /* estimated seconds */
	int reused;
	/* while running */
	pid_t pid;
	int fd;
	char buf[512];
	size_t blen;
	char status[160];
	double started;
} job;

typedef struct runner {
	const nb_suite *s;
	nb_registry *reg;
	const nb_run_options *o;
	nb_store *store;
	const char *data_dir;
	job *jobs;
	int n, cap;
	char fingerprint[65];
	int n_train, n_test, classes, in_c, in_h, in_w;
	const char *self_students[NB_SUITE_MAX];
	int n_self_students;
	int threads_per_job;
	int live_lines; /* lines drawn by the last live redraw */
	const nb_dist *dist; /* a data-parallel job's group (mpi_runner.c) */
	char stop[NB_ERR_LEN]; /* set when the disk or a folder fails */
} runner;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- storage trouble ------------------------------------------------------------ */

/* Creates, writes, flushes and removes a small file in dir: whether a run
 * can write there at all (permissions, a read-only or a full disk). */
static int probe_dir(const char *dir, char *err)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/.nasty-bench-probe.%ld", dir,
		 (long)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return nb_errorf(err, NB_EIO, "%s: cannot write there: %s", dir,
				 strerror(errno));
	static const char block[4096];
	int e = 0;
	errno = 0;
	if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
		e = errno ? errno : ENOSPC;
	else if (fsync(fd) != 0)
		e = errno;
	close(fd);
	unlink(path);
	if (e)
		return nb_errorf(err, NB_EIO, "%s: cannot write there: %s", dir,
				 strerror(e));
	return 0;
}

static int probe_folders(const runner *R, char *err)
{
	char dir[4200];
	snprintf(dir, sizeof dir, "%s/store", nb_store_root(R->store));
	int rc = probe_dir(dir, err);
	return rc < 0 ? rc : probe_dir(R->o->out, err);
}

/* Whether a job's failure says the disk or a folder is at fault rather
 * than the job: then every later job would fail the same way. Sets R->stop
 * to what the user must fix. */
static int storage_trouble(runner *R, const char *why)
{
	static const int codes[] = {ENOSPC, EDQUOT, EROFS};
	char err[NB_ERR_LEN];
	if (probe_folders(R, err) < 0) {
		snprintf(R->stop, sizeof R->stop, "%s", err);
		return 1;
	}
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (strstr(why, strerror(codes[i]))) {
			snprintf(R->stop, sizeof R->stop, "%s", why);
			return 1;
		}
	return 0;
}

/* Removes the temporary files (NAME.tmp.PID[.N], see nb_write_file_atomic
 * and nb_st_write) that a killed process left in dir. With `all` 0, a file
 * whose PID still runs is another writer's and stays; with 1 (an artefact
 * folder, whose lock the caller holds) every one goes. */
static void remove_stale_tmp(const char *dir, int all)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *t = strstr(e->d_name, ".tmp.");
		char *end;
		if (!t)
			continue;
		long pid = strtol(t + 5, &end, 10);
		if (end == t + 5 || (*end && *end != '.') || pid <= 0)
			continue;
		if (!all && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;
		char path[4600];
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}

/* ---- planning -------------------------------------------------------------------- */

static int add_job(runner *R, job *proto, char *err)
{
	if (R->n == R->cap) {
		int cap = R->cap ? R->cap * 2 : 64;
		job *j = realloc(R->jobs, (size_t)cap * sizeof *j);
		if (!j)
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		R->jobs = j;
		R->cap = cap;
	}
	R->jobs[R->n] = *proto;
	return R->n++;
}

static int find_teacher(const runner *R, const char *arch,
			const nb_plugin_use *strategy, uint64_t seed)
{
	for (int i = 0; i < R->n; i++) {
		const job *j = &R->jobs[i];
		if (j->teacher_role && j->strategy == strategy &&
		    j->seed == seed && !strcmp(j->arch, arch))
			return i;
	}
	return -1;
}

static const char *strategy_name(const job *j)
{
	return j->strategy ? j->strategy->plugin->name : "";
}

static const char *attack_name(const job *j)
{
	return j->attack ? j->attack->plugin->name : "scratch";
}

static void job_name(runner *R, job *j)
{
	if (j->teacher_role)
		snprintf(j->name, sizeof j->name, "teacher/%s/%s/s%llu",
			 j->arch, strategy_name(j),
			 (unsigned long long)j->seed);
	else if (j->dep < 0)
		snprintf(j->name, sizeof j->name, "student/%s/scratch/s%llu",
			 j->arch, (unsigned long long)j->seed);
	else
		snprintf(j->name, sizeof j->name, "student/%s/%s/%s-%s/s%llu",
			 j->arch, attack_name(j), R->jobs[j->dep].arch,
			 strategy_name(&R->jobs[j->dep]),
			 (unsigned long long)j->seed);
}

/* The student architectures: the suite's list, then (with `self`) each
 * teacher architecture not already in it. */
static int n_students(const runner *R)
{
	return R->n_self_students + R->s->n_students;
}

static const char *student_at(const runner *R, int i)
{
	return i < R->s->n_students ? R->s->students[i]
				    : R->self_students[i - R->s->n_students];
}

static void collect_self_students(runner *R)
{
	const nb_suite *s = R->s;
	if (!s->students_self)
		return;
	for (int t = 0; t < s->n_teachers; t++) {
		int known = 0;
		for (int k = 0; k < s->n_students; k++)
			known |= !strcmp(s->students[k], s->teachers[t]);
		for (int k = 0; k < R->n_self_students; k++)
			known |= !strcmp(R->self_students[k], s->teachers[t]);
		if (!known)
			R->self_students[R->n_self_students++] = s->teachers[t];
	}
}

static int plan(runner *R, char *err)
{
	const nb_suite *s = R->s;
	const uint64_t *seeds = R->o->n_seeds ? R->o->seeds : s->seeds;
	int n_seeds = R->o->n_seeds ? R->o->n_seeds : s->n_seeds;
	for (int si = 0; si < n_seeds; si++) {
		uint64_t seed = seeds[si];
		/* normal teachers, including adversaries named by a defence */
		for (int t = 0; t < s->n_teachers; t++) {
			job j = {.teacher_role = 1, .strategy = &s->normal,
				 .dep = -1, .seed = seed};
			snprintf(j.arch, sizeof j.arch, "%s", s->teachers[t]);
			if (find_teacher(R, j.arch, &s->normal, seed) < 0 &&
			    add_job(R, &j, err) < 0)
				return NB_ENOMEM;
		}
		for (int t = 0; t < s->n_teachers; t++)
			for (int d = 0; d < s->n_defenses; d++) {
				const nb_plugin_use *u = &s->defenses[d];
				job j = {.teacher_role = 1, .strategy = u,
					 .dep = -1, .seed = seed};
				snprintf(j.arch, sizeof j.arch, "%s",
					 s->teachers[t]);
				if (u->plugin->teacher->needs_adversary) {
					const char *adv = u->adversary[0]
								  ? u->adversary
								  : j.arch;
					int a = find_teacher(R, adv, &s->normal,
							     seed);
					if (a < 0) {
						job n = {.teacher_role = 1,
							 .strategy = &s->normal,
							 .dep = -1,
							 .seed = seed};
						snprintf(n.arch, sizeof n.arch,
							 "%s", adv);
						if ((a = add_job(R, &n, err)) < 0)
							return a;
					}
					j.dep = a;
				}
				if (add_job(R, &j, err) < 0)
					return NB_ENOMEM;
			}
		for (int st = 0; st < n_students(R); st++) {
			job j = {.teacher_role = 0, .dep = -1, .seed = seed};
			snprintf(j.arch, sizeof j.arch, "%s", student_at(R, st));
			if (add_job(R, &j, err) < 0)
				return NB_ENOMEM;
		}
		int n_now = R->n;
		for (int t = 0; t < n_now; t++) {
			if (!R->jobs[t].teacher_role || R->jobs[t].seed != seed)
				continue;
			/* only the suite's teachers are distilled, not extra
			 * adversaries */
			int listed = 0;
			for (int k = 0; k < s->n_teachers; k++)
				listed |= !strcmp(s->teachers[k], R->jobs[t].arch);
			if (!listed)
				continue;
			for (int st = 0; st < n_students(R); st++) {
				const char *sa = student_at(R, st);
				/* a "self" student learns only from its own
				 * architecture */
				if (st >= s->n_students &&
				    strcmp(sa, R->jobs[t].arch) != 0)
					continue;
				for (int a = 0; a < s->n_attacks; a++) {
					job j = {.teacher_role = 0,
						 .attack = &s->attacks[a],
						 .dep = t, .seed = seed};
					snprintf(j.arch, sizeof j.arch, "%s", sa);
					if (add_job(R, &j, err) < 0)
						return NB_ENOMEM;
				}
			}
		}
	}
	for (int i = 0; i < R->n; i++)
		job_name(R, &R->jobs[i]);
	return 0;
}

/* Keeps the jobs matching --only and everything they depend on. */
static int select_jobs(runner *R, char *err)
{
	const char *only = R->o->only;
	for (int i = 0; i < R->n; i++)
		R->jobs[i].selected = !only || !*only;
	if (!only || !*only)
		return 0;
	char *copy = strdup(only), *save = NULL;
	if (!copy)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int any = 0;
	for (char *p = strtok_r(copy, ",", &save); p;
	     p = strtok_r(NULL, ",", &save)) {
		while (*p == ' ')
			p++;
		for (int i = 0; i < R->n; i++)
			if (!fnmatch(p, R->jobs[i].name, 0)) {
				R->jobs[i].selected = 1;
				any = 1;
			}
	}
	free(copy);
	if (!any)
		return nb_errorf(err, NB_EINVAL,
				 "--only '%s' matches no job (run with --dry-run to see their names)",
				 only);
	/* dependencies come before their dependents in the list */
	for (int i = R->n - 1; i >= 0; i--)
		if (R->jobs[i].selected && R->jobs[i].dep >= 0)
			R->jobs[R->jobs[i].dep].selected = 1;
	return 0;
}

/* ---- canonical descriptions ---------------------------------------------------- */

static void appendf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	if (used + 1 >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

static void describe_opts(char *d, size_t len, const nb_plugin_use *u)
{
	appendf(d, len, "%s", u->plugin->name);
	for (const nb_option *o = u->plugin->options; o && o->name; o++) {
		char v[NB_OPT_STRING_LEN + 8];
		nb_options_format(o, u->opts, v, sizeof v);
		appendf(d, len, " %s=%s", o->name, v);
	}
	if (u->adversary[0])
		appendf(d, len, " adversary=%s", u->adversary);
}

static void describe_spec(char *d, size_t len, const nb_train_spec *t)
{
	const nb_optim_config *o = &t->optim;
	appendf(d, len,
		"train epochs=%d batch=%d optim=%d lr=%.9g wd=%.9g momentum=%.9g dampening=%.9g nesterov=%d betas=%.9g,%.9g eps=%.9g sched=%d gamma=%.9g t_max=%d eta_min=%.9g milestones=",
		t->epochs, t->batch, o->kind, o->lr, o->weight_decay,
		o->momentum, o->dampening, o->nesterov, o->beta1, o->beta2,
		o->eps, t->sched.kind, t->sched.gamma, t->sched.t_max,
		t->sched.eta_min);
	for (int i = 0; i < t->sched.n_milestones; i++)
		appendf(d, len, "%s%d", i ? "," : "", t->sched.milestones[i]);
	/* limits take seeded subsets (seed 230, the paper's subset loader) */
	appendf(d, len, " train_limit=%d test_limit=%d subset_seed=230\n",
		t->train_limit, t->test_limit);
}

static void describe(runner *R, job *j)
{
	char *d = j->desc;
	size_t len = sizeof j->desc;
	const nb_suite *s = R->s;
	const nb_augment *a = &s->aug;
	d[0] = 0;
	appendf(d, len, "nasty-bench model, numerics %d, conv kernels %s\n",
		NB_NUMERICS_VERSION,
		nb_conv_kernels_name(nb_conv2d_kernels()));
	appendf(d, len, "data %s %s train=%d test=%d classes=%d input=%dx%dx%d\n",
		s->dataset, R->fingerprint, R->n_train, R->n_test, R->classes,
		R->in_c, R->in_h, R->in_w);
	appendf(d, len,
		"augment pad_to=%d crop_pad=%d flip=%d rotate=%.9g mean=%.9g,%.9g,%.9g std=%.9g,%.9g,%.9g\n",
		a->pad_to, a->crop_pad, a->flip, a->rotate_deg, a->mean[0],
		a->mean[1], a->mean[2], a->std[0], a->std[1], a->std[2]);
	appendf(d, len, "role %s\narch %s\n",
		j->teacher_role ? "teacher" : "student", j->arch);
	if (j->teacher_role) {
		appendf(d, len, "strategy ");
		describe_opts(d, len, j->strategy);
		appendf(d, len, "\n");
	} else if (j->attack) {
		appendf(d, len, "attack ");
		describe_opts(d, len, j->attack);
		appendf(d, len, "\n");
	} else {
		appendf(d, len, "attack scratch\n");
	}
	describe_spec(d, len,
		      nb_suite_train_for(s, j->arch,
					 j->teacher_role ? NB_ROLE_TEACHER
							 : NB_ROLE_STUDENT));
	appendf(d, len, "seed %llu\n", (unsigned long long)j->seed);
	if (j->dep >= 0)
		appendf(d, len, "depends %s\n", R->jobs[j->dep].key);
	/* one line, as the store's summary keeps it: "; " between parts */
	size_t n = strlen(d);
	while (n && d[n - 1] == '\n')
		d[--n] = 0;
	char flat[sizeof j->desc];
	size_t o = 0;
	for (size_t i = 0; i < n && o + 3 < sizeof flat; i++) {
		if (d[i] == '\n') {
			flat[o++] = ';';
			flat[o++] = ' ';
		} else {
			flat[o++] = d[i];
		}
	}
	flat[o] = 0;
	snprintf(j->desc, sizeof j->desc, "%s", flat);
	nb_store_key(j->desc, j->key);
}

/* ---- the data: loaded in a child, described to the parent ------------------ */

#define SUBSET_SEED 230 /* the paper's fetch_subset_dataloader */

static int load_data(const runner *R, nb_dataset *train, nb_dataset *test,
		     const nb_train_spec *t, char *err)
{
	int rc = nb_dataset_load(R->s->dataset, R->data_dir, NB_SPLIT_TRAIN,
				 train, err);
	if (rc < 0)
		return rc;
	rc = nb_dataset_load(R->s->dataset, R->data_dir, NB_SPLIT_TEST, test,
			     err);
	if (rc < 0) {
		nb_dataset_free(train);
		return rc;
	}
	/* A limit keeps a seeded random subset (nb_dataset_subset, seed 230 as
	 * the paper's fetch_subset_dataloader), not the first images: both
	 * splits may be stored grouped by class (Tiny-ImageNet's are), and a
	 * prefix would then hold only the first classes. The same subset for
	 * every job and run seed. A limit at or above the split's size keeps
	 * the whole split, in its order. */
	if (t && t->train_limit > 0 && t->train_limit < train->n)
		rc = nb_dataset_subset(train, t->train_limit, SUBSET_SEED, err);
	if (rc == 0 && t && t->test_limit > 0 && t->test_limit < test->n)
		rc = nb_dataset_subset(test, t->test_limit, SUBSET_SEED, err);
	if (rc < 0) {
		nb_dataset_free(train);
		nb_dataset_free(test);
	}
	return rc;
}

/* The fingerprint covers the full data (limits are part of each spec). */
static int prepare_child(const runner *R, int fd)
{
	char err[NB_ERR_LEN], line[NB_ERR_LEN + 256];
	nb_dataset train = {0}, test = {0};
	const nb_suite *s = R->s;
	int rc = 0;
	if (s->synthetic[0]) {
		rc = mkdir(R->data_dir, 0755) == 0 || errno == EEXIST
			     ? 0
			     : nb_errorf(err, NB_EIO, "%s: cannot create: %s",
					 R->data_dir, strerror(errno));
		/* one writer at a time: the ranks of an mpirun, or two
		 * runners with the same --out, prepare it together */
		char lock_path[4200];
		snprintf(lock_path, sizeof lock_path, "%s/.lock", R->data_dir);
		int lock = rc == 0 ? open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
		if (lock >= 0)
			while (flock(lock, LOCK_EX) != 0 && errno == EINTR)
				;
		if (rc == 0)
			rc = nb_synth_write(R->data_dir, s->synthetic,
					    s->synthetic_train > 0 ? s->synthetic_train : 2000,
					    s->synthetic_test > 0 ? s->synthetic_test : 500,
					    0, 0, err);
		if (lock >= 0)
			close(lock);
	}
	if (rc < 0 || load_data(R, &train, &test, NULL, err) < 0) {
		snprintf(line, sizeof line, "E %s\n", err);
		(void)!write(fd, line, strlen(line));
		return 1;
	}
	int h, w;
	nb_augment_out_size(&train, &R->s->aug, &h, &w);
	/* hash labels and pixels of both splits */
	size_t pix_tr = (size_t)train.n * train.c * train.h * train.w;
	size_t pix_te = (size_t)test.n * test.c * test.h * test.w;
	size_t total = pix_tr + pix_te + ((size_t)train.n + test.n) * sizeof(int);
	unsigned char *all = malloc(total ? total : 1);
	if (!all) {
		snprintf(line, sizeof line, "E out of memory hashing the data\n");
		(void)!write(fd, line, strlen(line));
		return 1;
	}
	memcpy(all, train.images, pix_tr);
	memcpy(all + pix_tr, test.images, pix_te);
	memcpy(all + pix_tr + pix_te, train.labels, (size_t)train.n * sizeof(int));
	memcpy(all + pix_tr + pix_te + (size_t)train.n * sizeof(int),
	       test.labels, (size_t)test.n * sizeof(int));
	char hex[65];
	nb_sha256_hex(all, total, hex);
	free(all);
	snprintf(line, sizeof line, "F %s %d %d %d %d %d %d\n", hex, train.n,
		 test.n, train.classes, train.c, h, w);
	(void)!write(fd, line, strlen(line));
	nb_dataset_free(&train);
	nb_dataset_free(&test);
	return 0;
}

static int read_all(int fd, char *buf, size_t len)
{
	size_t got = 0;
	while (got + 1 < len) {
		ssize_t r = read(fd, buf + got, len - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = 0;
	return (int)got;
}

static int prepare(runner *R, char *err)
{
	int p[2];
	if (pipe(p) != 0)
		return nb_errorf(err, NB_EIO, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return nb_errorf(err, NB_EIO, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		_exit(prepare_child(R, p[1]));
	}
	close(p[1]);
	char line[NB_ERR_LEN + 256];
	read_all(p[0], line, sizeof line);
	close(p[0]);
	int status;
	waitpid(pid, &status, 0);
	if (line[0] == 'E') {
		line[strcspn(line, "\n")] = 0;
		return nb_errorf(err, NB_EIO, "%s", line + 2);
	}
	if (sscanf(line, "F %64s %d %d %d %d %d %d", R->fingerprint,
		   &R->n_train, &R->n_test, &R->classes, &R->in_c, &R->in_h,
		   &R->in_w) != 7)
		return nb_errorf(err, NB_EIO,
				 "could not read the dataset '%s' (the loader process died)",
				 R->s->dataset);
	return 0;
}

/* ---- cost estimates ------------------------------------------------------------------ */

static double arch_macs(runner *R, const char *arch)
{
	const nb_plugin *p = nb_registry_find(R->reg, NB_PLUGIN_ARCH, arch);
	char err[NB_ERR_LEN];
	nb_net *net = NULL;
	/* building allocates parameters; keep it cheap by not finalising */
	nb_arch_args a = {R->in_c, R->in_h, R->in_w, R->classes, NULL};
	void *opts = p && p->options ? nb_options_new(p, err) : NULL;
	a.opts = opts;
	double m = 0;
	if (p && p->arch->build(&a, &net, err) == 0 && net)
		for (int i = 0; i < nb_net_nodes(net); i++)
			m += nb_net_node_macs(net, i);
	nb_net_free(net);
	free(opts);
	return m;
}

/* Seconds at an assumed sustained 40 GFLOP/s per job on 2 threads: training
 * counts 3x the forward, every teacher or adversary forward 1x, and the
 * test pass 1x per epoch. Good to a factor of about two. */
static void estimate(runner *R)
{
	const double flops_per_s = 40e9;
	for (int i = 0; i < R->n; i++) {
		job *j = &R->jobs[i];
		const nb_train_spec *t = nb_suite_train_for(
			R->s, j->arch,
			j->teacher_role ? NB_ROLE_TEACHER : NB_ROLE_STUDENT);
		double ntr = t->train_limit > 0 && t->train_limit < R->n_train
				     ? t->train_limit
				     : R->n_train;
		double nte = t->test_limit > 0 && t->test_limit < R->n_test
				     ? t->test_limit
				     : R->n_test;
		double m = arch_macs(R, j->arch);
		double extra = j->dep >= 0 ? arch_macs(R, R->jobs[j->dep].arch)
					   : 0;
		double f = 2.0 * t->epochs * (ntr * (3 * m + extra) + nte * m);
		j->cost = f / flops_per_s;
		/* a data-free attack's cost is its own (a generator, image
		 * optimisation) and its plan's: not known before it starts */
		if (j->attack &&
		    !(j->attack->plugin->attack->access & NB_ACCESS_TRAIN_DATA))
			j->cost = -1;
	}
}

static const char *fmt_time(double s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%.0fm%02.0fs", floor(s / 60),
			 fmod(s, 60));
	else
		snprintf(buf, len, "%.0fh%02.0fm", floor(s / 3600),
			 fmod(s / 60, 60));
	return buf;
}

/* ---- running one job (in the child) --------------------------------------------- */

typedef struct child_ctx {
	int fd;
	double last_step;
} child_ctx;

static void child_say(int fd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void child_say(int fd, const char *fmt, ...)
{
	char line[NB_ERR_LEN + 128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	line[strcspn(line, "\n")] = 0;
	strcat(line, "\n");
	(void)!write(fd, line, strlen(line));
}

static void child_on_epoch(void *ctx, const nb_epoch_stats *s)
{
	child_ctx *c = ctx;
	child_say(c->fd, "P epoch %d/%d  loss %.4f  ce %.4f  kl %.4f  test %.2f%%  best %.2f%%  %.0f img/s|%.3f",
		  s->epoch + 1, s->epochs, s->loss, s->ce, s->kl, s->test_acc,
		  s->best_acc, s->img_per_s,
		  s->epoch_s * (s->epochs - s->epoch - 1));
}

static void child_on_step(void *ctx, int epoch, int step, int steps,
			  double loss)
{
	child_ctx *c = ctx;
	double t = now_s();
	if (t - c->last_step < 0.5 && step + 1 < steps)
		return;
	c->last_step = t;
	child_say(c->fd, "S epoch %d  step %d/%d  loss %.4f", epoch + 1,
		  step + 1, steps, loss);
}

/* Builds arch and loads the artefact `key`'s best checkpoint into it. */
static int load_model(const runner *R, const char *arch, const char *key,
		      nb_net **out, char *err)
{
	const nb_plugin *p = nb_registry_find(R->reg, NB_PLUGIN_ARCH, arch);
	char path[4096];
	int rc = nb_arch_build(p, NULL, R->in_c, R->in_h, R->in_w, R->classes,
			       0, out, err);
	if (rc < 0)
		return rc;
	rc = nb_store_path(R->store, key, "best.safetensors", 0, path,
			   sizeof path, err);
	if (rc == 0)
		rc = nb_checkpoint_load(*out, path, NULL, err);
	if (rc < 0) {
		nb_net_free(*out);
		*out = NULL;
	}
	return rc;
}

/* An attack's hooks as the training loop calls them (train.h). */
typedef struct attack_call {
	const nb_attack_ops *ops;
	void *state;
	const nb_attack_env *env;
} attack_call;

static int attack_synth(void *ctx, int epoch, int step, int n, float *x,
			int *y, char *err)
{
	attack_call *a = ctx;
	return a->ops->synth(a->state, a->env, epoch, step, n, x, y, err);
}

static int attack_save(void *ctx, nb_bag *out, char *err)
{
	attack_call *a = ctx;
	return a->ops->save(a->state, out, err);
}

static int attack_load(void *ctx, nb_bag *in, char *err)
{
	attack_call *a = ctx;
	return a->ops->load(a->state, in, err);
}

/* A data-free attack's plan, pre-filled with the suite's student schedule,
 * checked and applied to cfg. */
static int plan_synth(attack_call *a, nb_train_config *cfg, char *err)
{
	nb_synth_plan plan = {0};
	plan.batch = cfg->batch;
	plan.epochs = cfg->epochs;
	plan.optim = cfg->optim;
	plan.sched = cfg->sched;
	char e2[NB_ERR_LEN];
	int rc = a->ops->plan(a->state, a->env, &plan, e2);
	if (rc < 0)
		return nb_errorf(err, rc, "plan: %s", e2);
	if (plan.steps <= 0 || plan.batch <= 0 || plan.epochs < 0 ||
	    !(plan.optim.lr > 0))
		return nb_errorf(err, NB_EINVAL,
				 "the attack planned %d steps of batch %d for "
				 "%d epochs at lr %g: steps and batch must be "
				 "positive",
				 plan.steps, plan.batch, plan.epochs,
				 plan.optim.lr);
	cfg->synth = attack_synth;
	cfg->synth_ctx = a;
	cfg->synth_steps = plan.steps;
	cfg->batch = plan.batch;
	cfg->epochs = plan.epochs;
	cfg->optim = plan.optim;
	cfg->sched = plan.sched;
	cfg->sched.base_lr = plan.optim.lr;
	return 0;
}

static int job_child(runner *R, job *j, int fd)
{
	char err[NB_ERR_LEN];
	omp_set_num_threads(R->threads_per_job);
	openblas_set_num_threads(R->threads_per_job);
	const nb_train_spec *t = nb_suite_train_for(
		R->s, j->arch, j->teacher_role ? NB_ROLE_TEACHER : NB_ROLE_STUDENT);
	nb_dataset train = {0}, test = {0};
	nb_net *net = NULL, *other = NULL;
	nb_teacher *teacher = NULL;
	void *sstate = NULL, *astate = NULL;
	/* One trainer per artefact, whatever runs against the same store: a
	 * second runner waits here, then finds the model finished. (A
	 * data-parallel group's leader holds the lock for the group.) */
	char lock_path[4096];
	int rc = 0;
	if (!R->dist) {
		rc = nb_store_path(R->store, j->key, "lock", 1, lock_path,
				   sizeof lock_path, err);
		int lock = rc < 0 ? -1 : open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (lock < 0) {
			if (rc == 0)
				rc = nb_errorf(err, NB_EIO, "%s: %s", lock_path,
					       strerror(errno));
			goto fail;
		}
		if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
			child_say(fd, "S waiting for another process training it");
			while (flock(lock, LOCK_EX) != 0 && errno == EINTR)
				;
		}
		nb_model_summary done;
		if (nb_store_lookup(R->store, j->key, &done, err) == NB_STORE_DONE) {
			close(lock);
			return 0;
		}
		/* what a killed trainer of this artefact left half-written */
		lock_path[strlen(lock_path) - strlen("/lock")] = 0;
		remove_stale_tmp(lock_path, 1);
	}
	const int writer = !R->dist || R->dist->rank == 0;
	rc = load_data(R, &train, &test, t, err);
	if (rc < 0)
		goto fail;
	const nb_plugin *ap = nb_registry_find(R->reg, NB_PLUGIN_ARCH, j->arch);
	if ((rc = nb_arch_build(ap, NULL, R->in_c, R->in_h, R->in_w,
				R->classes, j->seed, &net, err)) < 0)
		goto fail;

	char state_path[4096], best_path[4096], log_path[4096];
	if ((rc = nb_store_path(R->store, j->key, "state.safetensors", 1,
				state_path, sizeof state_path, err)) < 0 ||
	    (rc = nb_store_path(R->store, j->key, "best.safetensors", 1,
				best_path, sizeof best_path, err)) < 0 ||
	    (rc = nb_store_path(R->store, j->key, "log.csv", 1, log_path,
				sizeof log_path, err)) < 0)
		goto fail;
	/* the description, for whoever looks into the store */
	char desc_path[4096];
	if (writer && nb_store_path(R->store, j->key, "description.txt", 1,
				    desc_path, sizeof desc_path, err) == 0)
		nb_write_file_atomic(desc_path, j->desc, strlen(j->desc), err);

	nb_train_config cfg;
	nb_train_config_default(&cfg);
	cfg.epochs = t->epochs;
	cfg.batch = t->batch;
	cfg.eval_batch = t->eval_batch;
	cfg.seed = j->seed;
	cfg.optim = t->optim;
	cfg.sched = t->sched;
	cfg.sched.base_lr = t->optim.lr;
	cfg.aug = R->s->aug;
	cfg.log_csv = log_path;
	cfg.state_path = state_path;
	cfg.best_path = best_path;
	nb_ckpt_meta meta = {0};
	snprintf(meta.arch, sizeof meta.arch, "%s", j->arch);
	snprintf(meta.dataset, sizeof meta.dataset, "%s", R->s->dataset);
	snprintf(meta.strategy, sizeof meta.strategy, "%s",
		 j->teacher_role ? strategy_name(j) : attack_name(j));
	snprintf(meta.version, sizeof meta.version, "%s", PACKAGE_VERSION);
	meta.classes = R->classes;
	meta.in_c = R->in_c;
	meta.in_h = R->in_h;
	meta.in_w = R->in_w;
	meta.seed = j->seed;
	meta.best_acc = -1;
	cfg.best_meta = &meta;
	child_ctx cc = {fd, 0};
	cfg.on_epoch = child_on_epoch;
	cfg.on_step = child_on_step;
	cfg.hook_ctx = &cc;

	nb_train_result res;
	memset(&res, 0, sizeof res);
	if (j->teacher_role) {
		const nb_teacher_ops *ops = j->strategy->plugin->teacher;
		if (j->dep >= 0 &&
		    (rc = load_model(R, R->jobs[j->dep].arch, R->jobs[j->dep].key,
				     &other, err)) < 0)
			goto fail;
		nb_teacher_env env = {net, other, &train, R->classes, j->seed};
		if (ops->init &&
		    (rc = ops->init(j->strategy->opts, &env, &sstate, err)) < 0)
			goto fail;
		cfg.loss = ops->loss;
		cfg.loss_ctx = sstate;
		child_say(fd, "S starting");
		rc = nb_train_dist(net, &train, &test, &cfg, R->dist, &res,
				   err);
		if (ops->fini)
			ops->fini(sstate);
		sstate = NULL;
	} else if (!j->attack) {
		child_say(fd, "S starting");
		rc = nb_train_dist(net, &train, &test, &cfg, R->dist, &res,
				   err);
	} else {
		const job *tj = &R->jobs[j->dep];
		const nb_plugin_use *su = tj->strategy;
		const nb_attack_ops *ops = j->attack->plugin->attack;
		if ((rc = load_model(R, tj->arch, tj->key, &other, err)) < 0)
			goto fail;
		/* the defence's release transform needs its state */
		nb_net *adv = NULL;
		if (su->plugin->teacher->release) {
			if (tj->dep >= 0 &&
			    (rc = load_model(R, R->jobs[tj->dep].arch,
					     R->jobs[tj->dep].key, &adv, err)) < 0)
				goto fail;
			nb_teacher_env tenv = {other, adv, &train, R->classes,
					       tj->seed};
			if (su->plugin->teacher->init &&
			    (rc = su->plugin->teacher->init(su->opts, &tenv,
							    &sstate, err)) < 0) {
				nb_net_free(adv);
				goto fail;
			}
		}
		teacher = nb_teacher_wrap(other,
					  su->plugin->teacher->release
						  ? su->plugin->teacher
						  : NULL,
					  sstate, ops->access, err);
		if (!teacher) {
			nb_net_free(adv);
			rc = NB_ENOMEM;
			goto fail;
		}
		nb_attack_env env = {net, teacher,
				     ops->access & NB_ACCESS_TRAIN_DATA ? &train
									: NULL,
				     &cfg, R->classes, j->seed};
		if (ops->init &&
		    (rc = ops->init(j->attack->opts, &env, &astate, err)) < 0) {
			nb_net_free(adv);
			goto fail;
		}
		cfg.loss = ops->loss;
		cfg.loss_ctx = astate;
		attack_call call = {ops, astate, &env};
		if (ops->save) {
			cfg.save = attack_save;
			cfg.load = attack_load;
			cfg.state_ctx = &call;
		}
		const int data_free = !(ops->access & NB_ACCESS_TRAIN_DATA);
		if (data_free && (rc = plan_synth(&call, &cfg, err)) < 0) {
			if (ops->fini)
				ops->fini(astate);
			nb_net_free(adv);
			goto fail;
		}
		child_say(fd, "S starting");
		/* a data-free attack's student never sees the training set */
		rc = nb_train_dist(net, data_free ? NULL : &train, &test, &cfg,
				   data_free ? NULL : R->dist, &res, err);
		if (ops->fini)
			ops->fini(astate);
		astate = NULL;
		if (sstate && su->plugin->teacher->fini)
			su->plugin->teacher->fini(sstate);
		sstate = NULL;
		nb_net_free(adv);
	}
	if (rc < 0)
		goto fail;

	nb_model_summary sum;
	memset(&sum, 0, sizeof sum);
	snprintf(sum.key, sizeof sum.key, "%s", j->key);
	snprintf(sum.status, sizeof sum.status, "%s",
		 res.diverged ? "diverged" : "ok");
	snprintf(sum.desc, sizeof sum.desc, "%s", j->desc);
	sum.epochs = res.epochs_done;
	sum.best_epoch = res.best_epoch + 1;
	sum.best_acc = res.best_acc;
	sum.last_acc = res.last_acc;
	sum.wall_s = res.wall_s;
	sum.final_loss = res.last.total;
	sum.final_ce = res.last.ce;
	sum.final_kl = res.last.kl;
	if (writer && (rc = nb_store_finish(R->store, j->key, &sum, err)) < 0)
		goto fail;
	nb_teacher_free(teacher);
	nb_net_free(other);
	nb_net_free(net);
	nb_dataset_free(&train);
	nb_dataset_free(&test);
	return 0;
fail:
	child_say(fd, "E %s", err);
	nb_teacher_free(teacher);
	nb_net_free(other);
	nb_net_free(net);
	nb_dataset_free(&train);
	nb_dataset_free(&test);
	return 1;
}

/* ---- scheduling and progress (in the parent) -------------------------------------- */

static void clear_live(runner *R)
{
	if (!R->o->live || !R->live_lines)
		return;
	for (int i = 0; i < R->live_lines; i++)
		fputs("\033[A\033[2K", stderr);
	fputs("\r", stderr);
	R->live_lines = 0;
}

static void draw_live(runner *R, int done, int total)
{
	if (!R->o->live || R->o->quiet)
		return;
	clear_live(R);
	int lines = 0;
	for (int i = 0; i < R->n; i++) {
		job *j = &R->jobs[i];
		if (j->state != J_RUNNING)
			continue;
		char el[32];
		fprintf(stderr, "\033[2K  %-46s %s  [%s]\n", j->name, j->status,
			fmt_time(now_s() - j->started, el, sizeof el));
		lines++;
	}
	fprintf(stderr, "\033[2K  %d/%d jobs finished\n", done, total);
	R->live_lines = lines + 1;
	fflush(stderr);
}

static void say(runner *R, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(runner *R, const char *fmt, ...)
{
	if (R->o->quiet)
		return;
	clear_live(R);
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static void handle_line(runner *R, job *j, char *line)
{
	if (line[0] == 'E') {
		snprintf(j->why, sizeof j->why, "%s", line + 2);
		return;
	}
	char *text = line + 2;
	if (line[0] == 'P') {
		char *eta = strchr(text, '|');
		double left = 0;
		if (eta) {
			*eta = 0;
			left = atof(eta + 1);
		}
		char t[32];
		snprintf(j->status, sizeof j->status, "%s  ETA %s", text,
			 fmt_time(left, t, sizeof t));
		if (!R->o->live)
			say(R, "%s: %s\n", j->name, j->status);
	} else if (line[0] == 'S') {
		snprintf(j->status, sizeof j->status, "%s", text);
	}
}

static void drain(runner *R, job *j)
{
	for (;;) {
		ssize_t r = read(j->fd, j->buf + j->blen,
				 sizeof j->buf - 1 - j->blen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		j->blen += (size_t)r;
		j->buf[j->blen] = 0;
		char *nl;
		while ((nl = strchr(j->buf, '\n'))) {
			*nl = 0;
			handle_line(R, j, j->buf);
			size_t rest = j->blen - (size_t)(nl + 1 - j->buf);
			memmove(j->buf, nl + 1, rest);
			j->blen = rest;
			j->buf[j->blen] = 0;
		}
		if (j->blen == sizeof j->buf - 1)
			j->blen = 0; /* an over-long line: drop it */
	}
}

static int start_job(runner *R, job *j, char *err)
{
	int p[2];
	if (pipe(p) != 0)
		return nb_errorf(err, NB_EIO, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return nb_errorf(err, NB_EIO, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		/* a job must not outlive a killed runner: a resumed run would
		 * otherwise race it for the same artefact */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		close(p[0]);
		for (int i = 0; i < R->n; i++)
			if (R->jobs[i].state == J_RUNNING && R->jobs[i].fd >= 0)
				close(R->jobs[i].fd);
		_exit(job_child(R, j, p[1]));
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
	j->pid = pid;
	j->fd = p[0];
	j->blen = 0;
	j->state = J_RUNNING;
	j->started = now_s();
	snprintf(j->status, sizeof j->status, "starting");
	say(R, "start  %s\n", j->name);
	return 0;
}

static void finish_job(runner *R, job *j, int status)
{
	drain(R, j);
	close(j->fd);
	j->fd = -1;
	char err[NB_ERR_LEN];
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	    nb_store_lookup(R->store, j->key, &j->sum, err) == NB_STORE_DONE) {
		j->state = J_DONE;
		char t[32];
		say(R, "done   %s: %s, best %.2f%% (epoch %d), %s\n", j->name,
		    j->sum.status, j->sum.best_acc, j->sum.best_epoch,
		    fmt_time(now_s() - j->started, t, sizeof t));
		return;
	}
	j->state = J_FAILED;
	if (!j->why[0]) {
		if (WIFSIGNALED(status))
			snprintf(j->why, sizeof j->why, "killed by signal %d",
				 WTERMSIG(status));
		else
			snprintf(j->why, sizeof j->why,
				 "the job ended without a verified artefact: %.400s",
				 err);
	}
	/* a full disk or an unwritable folder stops the run with one
	 * message (nb_run_suite), instead of failing every job after it */
	if (R->stop[0] || storage_trouble(R, j->why))
		return;
	clear_live(R);
	fprintf(stderr, "nasty-bench: job %s failed: %s\n", j->name, j->why);
}

/* A dependency that did not finish ok (failed, or diverged: its weights
 * are not a model) fails its dependents without running them. */
static int dep_blocked(const runner *R, const job *j, const char **why)
{
	if (j->dep < 0)
		return 0;
	const job *d = &R->jobs[j->dep];
	if (d->state == J_FAILED) {
		*why = "its teacher failed";
		return 1;
	}
	if (d->state == J_DONE && strcmp(d->sum.status, "ok") != 0) {
		*why = "its teacher diverged";
		return 1;
	}
	return 0;
}

static int execute(runner *R, char *err)
{
	int total = 0, done = 0, running = 0;
	int max_jobs = R->o->jobs > 0 ? R->o->jobs : 1;
	for (int i = 0; i < R->n; i++) {
		job *j = &R->jobs[i];
		j->fd = -1;
		if (!j->selected)
			continue;
		total++;
		char e2[NB_ERR_LEN];
		enum nb_store_state st = nb_store_lookup(R->store, j->key,
							 &j->sum, e2);
		if (st == NB_STORE_DONE) {
			j->state = J_DONE;
			j->reused = 1;
			done++;
		} else if (st == NB_STORE_CORRUPT) {
			say(R, "corrupt artefact of %s (%s): training it again\n",
			    j->name, e2);
			if (nb_store_discard(R->store, j->key, e2) < 0)
				return nb_errorf(err, NB_EIO, "%s", e2);
		}
	}
	if (done)
		say(R, "reusing %d finished model%s from the store\n", done,
		    done == 1 ? "" : "s");
	while (done < total) {
		/* start what is ready */
		for (int i = 0; i < R->n && running < max_jobs && !R->stop[0];
		     i++) {
			job *j = &R->jobs[i];
			if (!j->selected || j->state != J_PENDING)
				continue;
			const char *why;
			if (dep_blocked(R, j, &why)) {
				j->state = J_FAILED;
				snprintf(j->why, sizeof j->why, "%s", why);
				done++;
				say(R, "skip   %s: %s\n", j->name, why);
				continue;
			}
			if (j->dep >= 0 && R->jobs[j->dep].state != J_DONE)
				continue;
			int rc = start_job(R, j, err);
			if (rc < 0)
				return rc;
			running++;
		}
		if (!running && R->stop[0]) {
			clear_live(R);
			int fin = 0;
			for (int i = 0; i < R->n; i++)
				fin += R->jobs[i].selected &&
				       R->jobs[i].state == J_DONE;
			return nb_errorf(err, NB_EIO,
					 "%s: stopped with %d of %d models "
					 "finished (kept in the store); run "
					 "the same command again once there is "
					 "space or the folder is writable",
					 R->stop, fin, total);
		}
		if (!running) {
			int pending = 0;
			for (int i = 0; i < R->n; i++)
				pending += R->jobs[i].selected &&
					   R->jobs[i].state == J_PENDING;
			if (pending)
				return nb_errorf(err, NB_EINVAL,
						 "%d jobs can never start (a dependency cycle)",
						 pending);
			continue; /* everything left was just skipped */
		}
		/* wait for progress or an exit */
		struct pollfd pf[64];
		int map[64], np = 0;
		for (int i = 0; i < R->n && np < 64; i++)
			if (R->jobs[i].state == J_RUNNING && R->jobs[i].fd >= 0) {
				pf[np].fd = R->jobs[i].fd;
				pf[np].events = POLLIN;
				map[np++] = i;
			}
		poll(pf, (nfds_t)np, 500);
		for (int k = 0; k < np; k++)
			if (pf[k].revents)
				drain(R, &R->jobs[map[k]]);
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			for (int i = 0; i < R->n; i++)
				if (R->jobs[i].state == J_RUNNING &&
				    R->jobs[i].pid == pid) {
					finish_job(R, &R->jobs[i], status);
					running--;
					done++;
				}
		draw_live(R, done, total);
	}
	clear_live(R);
	return 0;
}

/* ---- results ------------------------------------------------------------------------ */

/* Copies the artefact file `name` of job j to OUT/SUBDIR/KEY.EXT, if the
 * artefact has it (the per-epoch log; a data-free attack's grid of
 * synthesised images, synthesised.png). The copy is written whole or not
 * at all; a copy that fails (a read error, no memory, a full disk) is one
 * line on stderr naming the file, which stays in the store, and returns
 * -1 (report goes on and fails at the end). */
static int copy_artefact_file(runner *R, const job *j, const char *name,
			      const char *subdir, const char *ext)
{
	char src[4096], dst[4096], err[NB_ERR_LEN] = "";
	if (nb_store_path(R->store, j->key, name, 0, src, sizeof src, err) < 0)
		return 0;
	FILE *f = fopen(src, "rb");
	if (!f)
		return 0; /* this artefact has no such file */
	snprintf(dst, sizeof dst, "%s/%s", R->o->out, subdir);
	mkdir(dst, 0755);
	snprintf(dst, sizeof dst, "%s/%s/%s.%s", R->o->out, subdir, j->key,
		 ext);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	char chunk[65536];
	size_t r;
	int ok = 1;
	while (ok && (r = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (len + r > cap) {
			cap = (len + r) * 2;
			char *nb = realloc(buf, cap);
			if (!nb) {
				snprintf(err, sizeof err, "out of memory");
				ok = 0;
				break;
			}
			buf = nb;
		}
		memcpy(buf + len, chunk, r);
		len += r;
	}
	if (ok && ferror(f)) {
		snprintf(err, sizeof err, "read error");
		ok = 0;
	}
	fclose(f);
	if (ok && nb_write_file_atomic(dst, buf ? buf : "", len, err) < 0)
		ok = 0;
	free(buf);
	if (ok)
		return 0;
	fprintf(stderr,
		"nasty-bench: could not copy %s: %s; the original stays in "
		"the store\n",
		src, err);
	return -1;
}

static int report(runner *R, double wall, char *err)
{
	const nb_suite *s = R->s;
	nb_result *rows = calloc((size_t)R->n + 1, sizeof *rows);
	if (!rows)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int n = 0, failed_copies = 0;
	char logs[4096];
	snprintf(logs, sizeof logs, "%s/logs", R->o->out);
	mkdir(logs, 0755);
	remove_stale_tmp(R->o->out, 0);
	remove_stale_tmp(logs, 0);
	for (int i = 0; i < R->n; i++) {
		job *j = &R->jobs[i];
		if (!j->selected)
			continue;
		nb_result *r = &rows[n++];
		snprintf(r->suite, sizeof r->suite, "%s", s->name);
		snprintf(r->tier, sizeof r->tier, "%s", s->tier);
		snprintf(r->dataset, sizeof r->dataset, "%s", s->dataset);
		r->seed = j->seed;
		snprintf(r->role, sizeof r->role, "%s",
			 j->teacher_role ? "teacher" : "student");
		snprintf(r->arch, sizeof r->arch, "%s", j->arch);
		if (j->teacher_role) {
			snprintf(r->strategy, sizeof r->strategy, "%s",
				 strategy_name(j));
		} else {
			snprintf(r->attack, sizeof r->attack, "%s",
				 attack_name(j));
			if (j->dep >= 0) {
				snprintf(r->teacher_arch, sizeof r->teacher_arch,
					 "%s", R->jobs[j->dep].arch);
				snprintf(r->teacher_strategy,
					 sizeof r->teacher_strategy, "%s",
					 strategy_name(&R->jobs[j->dep]));
			}
		}
		snprintf(r->key, sizeof r->key, "%s", j->key);
		r->final_kl = NAN;
		if (j->state == J_DONE) {
			r->epochs = j->sum.epochs;
			r->best_acc = j->sum.best_acc;
			r->last_acc = j->sum.last_acc;
			r->wall_s = j->sum.wall_s;
			snprintf(r->status, sizeof r->status, "%s",
				 j->sum.status);
			if (j->teacher_role && j->dep >= 0)
				r->final_kl = j->sum.final_kl;
			failed_copies += copy_artefact_file(R, j, "log.csv",
							    "logs", "csv") < 0;
			if (!j->teacher_role && j->attack)
				failed_copies +=
				    copy_artefact_file(R, j, "synthesised.png",
						       "images", "png") < 0;
		} else {
			snprintf(r->status, sizeof r->status, "failed");
		}
	}
	const char *students[2 * NB_SUITE_MAX], *teachers[NB_SUITE_MAX];
	const char *defenses[NB_SUITE_MAX], *attacks[NB_SUITE_MAX];
	for (int i = 0; i < n_students(R); i++)
		students[i] = student_at(R, i);
	for (int i = 0; i < s->n_teachers; i++)
		teachers[i] = s->teachers[i];
	for (int i = 0; i < s->n_defenses; i++)
		defenses[i] = s->defenses[i].plugin->name;
	char access[NB_SUITE_MAX][160];
	const char *access_p[NB_SUITE_MAX];
	for (int i = 0; i < s->n_attacks; i++) {
		attacks[i] = s->attacks[i].plugin->name;
		nb_access_describe(s->attacks[i].plugin->attack->access,
				   access[i], sizeof access[i]);
		access_p[i] = access[i];
	}
	nb_report_info info = {
		.suite = s->name,
		.tier = s->tier,
		.dataset = s->dataset,
		.version = PACKAGE_VERSION,
		.command = R->o->command,
		.n_seeds = R->o->n_seeds ? R->o->n_seeds : s->n_seeds,
		.threads = R->threads_per_job * (R->o->jobs > 0 ? R->o->jobs : 1),
		.jobs = R->o->jobs > 0 ? R->o->jobs : 1,
		.wall_s = wall,
		.students = students,
		.n_students = n_students(R),
		.teachers = teachers,
		.n_teachers = s->n_teachers,
		.defenses = defenses,
		.n_defenses = s->n_defenses,
		.attacks = attacks,
		.n_attacks = s->n_attacks,
		.attack_access = access_p,
	};
	int rc = nb_report_write(R->o->out, &info, rows, n,
				 R->o->quiet ? NULL : stdout, err);
	free(rows);
	if (rc >= 0 && failed_copies)
		return nb_errorf(err, NB_EIO,
				 "%d per-model file%s could not be copied into "
				 "%s (the lines above); the reports are written: "
				 "run the same command again to copy %s",
				 failed_copies, failed_copies > 1 ? "s" : "",
				 R->o->out, failed_copies > 1 ? "them" : "it");
	return rc;
}

/* mkdir -p */
static int make_dirs(const char *path, char *err)
{
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, 0755) != 0 && errno != EEXIST)
				return nb_errorf(err, NB_EIO, "%s: cannot create: %s",
						 buf, strerror(errno));
			*p = '/';
		}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return nb_errorf(err, NB_EIO, "%s: cannot create: %s", buf,
				 strerror(errno));
	return 0;
}

static void print_plan(runner *R)
{
	double total = 0, todo = 0;
	int unknown = 0;
	printf("%-56s %-10s %s\n", "job", "estimate", "state");
	for (int i = 0; i < R->n; i++) {
		job *j = &R->jobs[i];
		if (!j->selected)
			continue;
		char e2[NB_ERR_LEN], t[32];
		nb_model_summary sum;
		enum nb_store_state st = nb_store_lookup(R->store, j->key, &sum, e2);
		const char *state = st == NB_STORE_DONE      ? "finished"
				    : st == NB_STORE_PARTIAL ? "partial (resumes)"
				    : st == NB_STORE_CORRUPT ? "corrupt (retrains)"
							     : "to train";
		printf("%-56s %-10s %s", j->name,
		       j->cost < 0 ? "?" : fmt_time(j->cost, t, sizeof t),
		       state);
		if (j->dep >= 0)
			printf("  <- %s", R->jobs[j->dep].name);
		printf("\n");
		if (j->cost < 0) {
			unknown++;
			continue;
		}
		total += j->cost;
		if (st != NB_STORE_DONE)
			todo += j->cost;
	}
	char a[32], b[32];
	int jobs = R->o->jobs > 0 ? R->o->jobs : 1;
	printf("\n%d jobs; estimated compute %s in all, %s still to run (about %s with %d job%s at once)",
	       R->n, fmt_time(total, a, sizeof a), fmt_time(todo, b, sizeof b),
	       fmt_time(todo / jobs, a, sizeof a), jobs, jobs == 1 ? "" : "s");
	if (unknown)
		printf(", not counting %d data-free job%s (\"?\": their cost is "
		       "the attack's own)",
		       unknown, unknown == 1 ? "" : "s");
	printf("\n");
}

int nb_run_suite(const nb_suite *s, nb_registry *reg,
		 const nb_run_options *o, char *err)
{
	runner R;
	memset(&R, 0, sizeof R);
	R.s = s;
	R.reg = reg;
	R.o = o;
	R.data_dir = o->data_dir && *o->data_dir ? o->data_dir
			: s->data_dir[0]             ? s->data_dir
						     : NULL;
	char synth_dir[4096];
	if (s->synthetic[0]) {
		snprintf(synth_dir, sizeof synth_dir, "%s/synthetic-data", o->out);
		R.data_dir = synth_dir;
	}
	int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	int jobs = o->jobs > 0 ? o->jobs : 1;
	R.threads_per_job = threads / jobs > 0 ? threads / jobs : 1;
	double t0 = now_s();
	int rc;
	/* under mpirun, rank 0 speaks for the run (mpi_runner.c) */
	int root = 1;
	nb_run_options quiet_o;
	if (nb_run_rank() != 0) {
		quiet_o = *o;
		quiet_o.quiet = 1;
		quiet_o.live = 0;
		R.o = o = &quiet_o;
		root = 0;
	}
	if ((rc = make_dirs(o->store, err)) < 0 || (rc = make_dirs(o->out, err)) < 0)
		return rc;
	R.store = nb_store_open(o->store, err);
	if (!R.store)
		return NB_EIO;
	/* an unwritable folder or a full disk: say so before any training */
	if (!o->dry_run && (rc = probe_folders(&R, err)) < 0)
		goto out;
	collect_self_students(&R);
	if ((rc = prepare(&R, err)) < 0 || (rc = plan(&R, err)) < 0 ||
	    (rc = select_jobs(&R, err)) < 0)
		goto out;
	for (int i = 0; i < R.n; i++)
		describe(&R, &R.jobs[i]);
	estimate(&R);
	if (o->dry_run) {
		if (root)
			print_plan(&R);
		rc = 0;
		goto out;
	}
	if (!o->quiet) {
		int sel = 0;
		for (int i = 0; i < R.n; i++)
			sel += R.jobs[i].selected;
		printf("suite %s (tier %s) on %s: %d jobs, %d at once with %d thread%s each; store %s\n",
		       s->name, s->tier[0] ? s->tier : "-", s->dataset, sel, jobs,
		       R.threads_per_job, R.threads_per_job == 1 ? "" : "s",
		       o->store);
	}
	signal(SIGPIPE, SIG_IGN);
	if (nb_mpi_launched()) {
#ifdef HAVE_MPI
		rc = nb_mpi_execute(&R, &root, err);
#else
		rc = nb_errorf(err, NB_EINVAL,
			       "started by mpirun, but this nasty-bench is built without MPI: configure --with-mpi");
#endif
	} else {
		rc = execute(&R, err);
	}
	if (rc < 0 || !root)
		goto out;
	if ((rc = report(&R, now_s() - t0, err)) < 0)
		goto out;
	int failed = 0;
	for (int i = 0; i < R.n; i++)
		failed += R.jobs[i].selected && R.jobs[i].state == J_FAILED;
	if (!o->quiet)
		printf("\nreports: %s/results.csv, %s/gaps.csv, %s/report.md\n",
		       o->out, o->out, o->out);
	rc = failed ? 1 : 0;
out:
	nb_store_close(R.store);
	free(R.jobs);
	return rc;
}

/* ---- what the MPI executor sees (runner_mpi.h) ----------------------------------- */

int nb__runner_n_jobs(const runner *R)
{
	return R->n;
}

void nb__runner_job_info(const runner *R, int i, nb_job_info *out)
{
	const job *j = &R->jobs[i];
	const nb_train_spec *t = nb_suite_train_for(
		R->s, j->arch, j->teacher_role ? NB_ROLE_TEACHER : NB_ROLE_STUDENT);
	int n = t->train_limit > 0 && t->train_limit < R->n_train
			? t->train_limit
			: R->n_train;
	int b = t->batch < n ? t->batch : n;
	int last = n % b ? n % b : b;
	if (last == 1 && n > 1)
		last = b; /* nb_train drops a one-sample last batch */
	out->name = j->name;
	out->key = j->key;
	out->dep = j->dep;
	out->selected = j->selected;
	out->reused = j->reused;
	out->cost = j->cost;
	/* data-free students train on the attack's own synthetic batches,
	 * which a group cannot split */
	out->dp_ok = j->teacher_role || !j->attack ||
		     (j->attack->plugin->attack->access & NB_ACCESS_TRAIN_DATA);
	out->min_batch = last < b ? last : b;
}

const nb_run_options *nb__runner_options(const runner *R)
{
	return R->o;
}

const nb_suite *nb__runner_suite(const runner *R)
{
	return R->s;
}

nb_store *nb__runner_store(const runner *R)
{
	return R->store;
}

int nb__runner_threads_per_job(const runner *R)
{
	return R->threads_per_job;
}

void nb__runner_plan_digest(const runner *R, char out[65])
{
	size_t len = (size_t)R->n * 80 + 1;
	char *buf = calloc(len, 1);
	if (!buf) {
		snprintf(out, 65, "out-of-memory");
		return;
	}
	size_t o = 0;
	for (int i = 0; i < R->n; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s %d %d\n",
				      R->jobs[i].key, R->jobs[i].dep,
				      R->jobs[i].selected);
	nb_sha256_hex(buf, o, out);
	free(buf);
}

int nb__runner_job_child(runner *R, int i, int fd, const nb_dist *dist)
{
	R->dist = dist;
	int rc = job_child(R, &R->jobs[i], fd);
	R->dist = NULL;
	return rc;
}

int nb__runner_job_result(runner *R, int i, const char *why,
			  nb_model_summary *sum)
{
	job *j = &R->jobs[i];
	char err[NB_ERR_LEN];
	if (nb_store_lookup(R->store, j->key, &j->sum, err) == NB_STORE_DONE) {
		j->state = J_DONE;
		if (sum)
			*sum = j->sum;
		return 1;
	}
	j->state = J_FAILED;
	snprintf(j->why, sizeof j->why, "%s",
		 why && *why ? why
			     : "the job ended without a verified artefact");
	return 0;
}

int nb__runner_dep_blocked(runner *R, int i, const char **why)
{
	job *j = &R->jobs[i];
	if (!dep_blocked(R, j, why))
		return 0;
	j->state = J_FAILED;
	snprintf(j->why, sizeof j->why, "%s", *why);
	return 1;
}

/* The launcher's environment, before any MPI call: mpirun (Open MPI),
 * Hydra (MPICH) and srun (Slurm, with PMI-2 or PMIx) name the world size
 * and the rank. One process alone is an ordinary run. */
int nb_mpi_env_rank(void)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK",
					   "PMI_RANK", NULL};
	for (int i = 0; vars[i]; i++) {
		const char *v = getenv(vars[i]);
		if (v && *v)
			return atoi(v);
	}
	return 0;
}

int nb_run_rank(void)
{
	return nb_mpi_launched() ? nb_mpi_env_rank() : 0;
}

static int env_int(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? atoi(v) : -1;
}

int nb_mpi_launched(void)
{
	int n = env_int("OMPI_COMM_WORLD_SIZE");
	if (n < 0)
		n = env_int("PMI_SIZE");
	if (n < 0 && getenv("PMIX_RANK"))
		n = env_int("SLURM_STEP_NUM_TASKS");
	return n > 1;
}
