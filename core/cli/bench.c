/*
 * bench.c - `nasty-bench bench`: training and inference throughput of the
 * engine on synthetic inputs, one line per configuration:
 *
 *   arch=A mode=M batch=B threads=T img_per_s=I gflops=G peak_rss_mb=R \
 *   img_per_cpu_s=U
 *
 * A training step is forward + cross entropy + backward + SGD step (momentum
 * 0.9, weight decay 5e-4) in training mode; inference is evaluation mode,
 * forward only. GFLOP/s counts 2 FLOPs per multiply-accumulate of the conv
 * and linear layers, and 3x the forward for a training step. Inference
 * runs nb_net_forward_infer (BatchNorm folded into convolutions), the path
 * teacher queries take. Each
 * configuration runs in its own child process, so peak_rss_mb is that
 * configuration's own peak resident memory. img_per_cpu_s counts images
 * per second of CPU time the process used in the timed steps (all
 * threads): on a shared machine it moves far less than img_per_s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "cli.h"
#include "error.h"
#include "loss.h"
#include "optim.h"
#include "registry.h"
#include "rng.h"

typedef struct bench_cfg {
	const nb_plugin *arch;
	int train; /* 1 train, 0 infer */
	int batch, threads;
	int c, h, w, classes;
	int warmup, min_steps;
	double seconds;
	const char *conv; /* --conv as given: auto, winograd, packed or blas */
} bench_cfg;

/* `--arch all`: every architecture of the paper (not convstack, not the
 * skeletons), in the order the reports list them. */
static const char *const paper_archs[] = {
    "lenet5",	   "lenet5-half", "cnn",	  "preresnet20",
    "preresnet32", "resnet18",	  "resnet34",	  "resnet50",
    "resnext29",   "mobilenetv2", "shufflenetv2", NULL};

#define BENCH_MAX 32

static void bench_usage(FILE *f)
{
	fputs(
	    "usage: nasty-bench bench [OPTIONS]\n"
	    "\n"
	    "Measures images/s of training steps and inference on synthetic "
	    "data.\n"
	    "Without options: lenet5 and convstack, train and infer, batch "
	    "128,\n"
	    "1 and 2 threads.\n"
	    "\n"
	    "  --arch NAME        an architecture plugin (repeatable), or "
	    "'all'\n"
	    "                     for every architecture of the paper\n"
	    "  --mode M           train, infer or both (default both)\n"
	    "  --batch N          default 128\n"
	    "  --threads N        thread count (repeatable; default 1 and 2)\n"
	    "  --input CxHxW      input shape (default: the architecture's "
	    "own)\n"
	    "  --classes N        default 10\n"
	    "  --seconds S        timed seconds per configuration (default 3)\n"
	    "  --warmup N         untimed steps before timing (default 2)\n"
	    "  --min-steps N      timed steps at least (default 3)\n"
	    "  --conv K           convolution kernels: auto (default), "
	    "winograd, packed or blas\n",
	    f);
}

static void default_input(const nb_plugin *arch, int *c, int *h, int *w)
{
	const nb_arch_ops *o = arch->arch;
	*c = o->default_c > 0 ? o->default_c : 3;
	*h = o->default_h > 0 ? o->default_h : 32;
	*w = o->default_w > 0 ? o->default_w : 32;
}

/* Runs one configuration in this process and prints its line. */
static int bench_one(const bench_cfg *b)
{
	char err[NB_ERR_LEN];
	cli_set_threads(b->threads);
	nb_net *net = NULL;
	if (nb_arch_build(b->arch, NULL, b->c, b->h, b->w, b->classes, 1, &net,
			  err) < 0) {
		cli_error("bench: %s", err);
		return 1;
	}
	double macs = 0;
	for (int i = 0; i < nb_net_nodes(net); i++)
		macs += nb_net_node_macs(net, i);
	size_t per = (size_t)b->c * b->h * b->w;
	float *x = malloc((size_t)b->batch * per * sizeof(float));
	int *y = malloc((size_t)b->batch * sizeof(int));
	if (!x || !y) {
		cli_error("bench: out of memory");
		return 1;
	}
	nb_rng rng;
	nb_rng_seed(&rng, 1, NB_RNG_NOISE);
	for (size_t i = 0; i < (size_t)b->batch * per; i++)
		x[i] = (float)nb_rng_normal(&rng);
	for (int i = 0; i < b->batch; i++)
		y[i] = (int)nb_rng_below(&rng, (uint64_t)b->classes);
	nb_param **params;
	int np = nb_net_params(net, &params);
	nb_optim_config oc = nb_optim_sgd_default();
	nb_optim *opt = nb_optim_new(&oc, params, np, err);
	if (!opt) {
		cli_error("bench: %s", err);
		return 1;
	}
	nb_net_set_training(net, b->train);
	int out = nb_net_output_node(net);
	int iters = 0;
	double t0 = 0, elapsed = 0;
	struct timespec c0 = {0, 0}, c1;
	/* the warm-up steps, then timed steps until both the time and the
	 * minimum step count are reached */
	for (int i = 0;; i++) {
		if (i == b->warmup) {
			t0 = omp_get_wtime();
			clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
		}
		if ((b->train ? nb_net_forward : nb_net_forward_infer)(
			net, x, b->batch, err) < 0) {
			cli_error("bench: %s", err);
			return 1;
		}
		if (b->train) {
			float *dz = nb_net_grad(net, out);
			nb_cross_entropy(nb_net_output(net, out), y, b->batch,
					 b->classes, 0.0f, dz, 1.0f);
			nb_optim_zero_grad(opt);
			if (nb_net_backward(net, NULL, err) < 0) {
				cli_error("bench: %s", err);
				return 1;
			}
			nb_optim_step(opt);
		}
		if (i >= b->warmup) {
			iters++;
			elapsed = omp_get_wtime() - t0;
			if (elapsed >= b->seconds && iters >= b->min_steps)
				break;
		}
	}
	double img_s = iters * (double)b->batch / elapsed;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	double cpu = (double)(c1.tv_sec - c0.tv_sec) +
		     (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
	double flops = macs * 2.0 * (b->train ? 3.0 : 1.0) * img_s;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("arch=%s mode=%s batch=%d threads=%d img_per_s=%.1f gflops=%.2f "
	       "peak_rss_mb=%.1f img_per_cpu_s=%.1f conv=%s\n",
	       b->arch->name, b->train ? "train" : "infer", b->batch,
	       b->threads, img_s, flops / 1e9, ru.ru_maxrss / 1024.0,
	       cpu > 0 ? iters * (double)b->batch / cpu : 0.0, b->conv);
	fflush(stdout);
	nb_optim_free(opt);
	nb_net_free(net);
	free(x);
	free(y);
	return 0;
}

static int bench_forked(const bench_cfg *b)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return bench_one(b);
	if (pid == 0)
		_exit(bench_one(b));
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return 1;
	if (WIFSIGNALED(status)) {
		cli_error("bench: %s %s threads=%d: killed by signal %d",
			  b->arch->name, b->train ? "train" : "infer",
			  b->threads, WTERMSIG(status));
		return 1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* Adds name (or every paper architecture for "all") to archs. */
static int add_arch(const char **archs, int *n, const char *name)
{
	if (strcmp(name, "all") != 0) {
		if (*n == BENCH_MAX) {
			cli_error("bench: more than %d architectures",
				  BENCH_MAX);
			return -1;
		}
		archs[(*n)++] = name;
		return 0;
	}
	for (int i = 0; paper_archs[i]; i++)
		if (add_arch(archs, n, paper_archs[i]) < 0)
			return -1;
	return 0;
}

int cmd_bench(int argc, char **argv)
{
	const char *archs[BENCH_MAX];
	int n_archs = 0, threads[BENCH_MAX], n_threads = 0;
	int batch = 128, classes = 10, c = 0, h = 0, w = 0;
	int warmup = 2, min_steps = 3;
	float seconds = 3;
	int modes = 3; /* bit 1 train, bit 2 infer */
	const char *conv = "auto";
	cli_args a;
	cli_args_init(&a, argc, argv);
	int r;
	while ((r = cli_next(&a)) > 0) {
		const char *k = a.key;
		int bad = 0;
		if (!strcmp(k, "help")) {
			bench_usage(stdout);
			return 0;
		} else if (!strcmp(k, "arch")) {
			const char *v = cli_value(&a);
			bad = !v || add_arch(archs, &n_archs, v) < 0;
		} else if (!strcmp(k, "threads")) {
			int t;
			bad = cli_int(&a, 1, 1024, &t) < 0;
			if (!bad && n_threads == BENCH_MAX) {
				cli_error("bench: more than %d --threads",
					  BENCH_MAX);
				bad = 1;
			}
			if (!bad)
				threads[n_threads++] = t;
		} else if (!strcmp(k, "mode")) {
			const char *v = cli_value(&a);
			if (!v)
				return 2;
			if (!strcmp(v, "train"))
				modes = 1;
			else if (!strcmp(v, "infer"))
				modes = 2;
			else if (!strcmp(v, "both"))
				modes = 3;
			else {
				cli_error(
				    "--mode: '%s' is not train, infer or both",
				    v);
				return 2;
			}
		} else if (!strcmp(k, "batch"))
			bad = cli_int(&a, 1, 1 << 16, &batch) < 0;
		else if (!strcmp(k, "classes"))
			bad = cli_int(&a, 2, 100000, &classes) < 0;
		else if (!strcmp(k, "warmup"))
			bad = cli_int(&a, 0, 1000000, &warmup) < 0;
		else if (!strcmp(k, "min-steps"))
			bad = cli_int(&a, 1, 1000000, &min_steps) < 0;
		else if (!strcmp(k, "seconds"))
			bad = cli_float(&a, 0.01, 3600, &seconds) < 0;
		else if (!strcmp(k, "conv")) {
			const char *v = cli_value(&a);
			if (!v)
				return 2;
			conv = v;
			if (!strcmp(v, "auto"))
				nb_conv2d_set_kernels(NB_CONV_AUTO);
			else if (!strcmp(v, "packed"))
				nb_conv2d_set_kernels(NB_CONV_PACKED);
			else if (!strcmp(v, "blas"))
				nb_conv2d_set_kernels(NB_CONV_BLAS);
			else if (!strcmp(v, "winograd"))
				nb_conv2d_set_kernels(NB_CONV_WINOGRAD);
			else {
				cli_error("--conv: '%s' is not auto, packed, "
					  "winograd or blas",
					  v);
				return 2;
			}
		} else if (!strcmp(k, "input")) {
			const char *v = cli_value(&a);
			if (cli_parse_input(v, &c, &h, &w) < 0) {
				cli_error("--input: '%s' is not CxHxW",
					  v ? v : "");
				return 2;
			}
		} else {
			cli_error("bench: unknown option --%s (see nasty-bench "
				  "bench --help)",
				  k);
			return 2;
		}
		if (bad)
			return 2;
	}
	if (r < 0)
		return 2;
	if (!n_archs) {
		archs[n_archs++] = "lenet5";
		archs[n_archs++] = "convstack";
	}
	if (!n_threads) {
		threads[n_threads++] = 1;
		threads[n_threads++] = 2;
	}
	nb_registry *reg = cli_registry();
	if (!reg)
		return 2;
	const nb_plugin *plugins[BENCH_MAX];
	for (int i = 0; i < n_archs; i++)
		if (!(plugins[i] = cli_find_arch(reg, archs[i])))
			return 2;
	int fails = 0;
	for (int i = 0; i < n_archs; i++)
		for (int m = 1; m <= 2; m++) {
			if (!(modes & m))
				continue;
			for (int t = 0; t < n_threads; t++) {
				bench_cfg b = {.arch = plugins[i],
					       .train = m == 1,
					       .batch = batch,
					       .threads = threads[t],
					       .c = c,
					       .h = h,
					       .w = w,
					       .classes = classes,
					       .warmup = warmup,
					       .min_steps = min_steps,
					       .seconds = seconds,
					       .conv = conv};
				if (!c)
					default_input(plugins[i], &b.c, &b.h,
						      &b.w);
				fails += bench_forked(&b) != 0;
			}
		}
	return fails ? 1 : 0;
}
