/*
 * mpi_runner.c - runs a suite's job graph across the ranks of an mpirun
 * (configure --with-mpi; runner_mpi.h).
 *
 * Every rank plans the same graph (runner.c; a digest checks it). Rank 0
 * schedules: it hands ready jobs, in dependency order, to ranks with a
 * free slot (--jobs per rank, itself included), and, with
 * --data-parallel, trains a job that everyone waits for on a group of
 * idle ranks when more ranks are idle than jobs are ready. A job writes
 * its artefact into the shared store with the usual atomic writes and
 * per-artefact lock, so a run killed on every rank resumes from the store,
 * with any number of ranks, exactly as a single-process run does. Rank 0
 * verifies every artefact, shows the whole matrix's progress and writes
 * the reports.
 *
 * Why a launcher: each rank forks, before MPI_Init and before any OpenMP
 * region, one launcher process that never touches MPI; the launcher forks
 * the job processes (a job keeps its crash and its OpenMP team to itself,
 * as in a single-process run) and relays their progress lines over a
 * pipe. The rank itself never forks after MPI_Init: Open MPI supports
 * fork() only with caveats (a child must not call MPI, and with
 * OS-bypass networks such as InfiniBand registered memory is not copied
 * into the child), and libgomp does not survive a fork after an OpenMP
 * region (the child's first parallel region waits for threads it does not
 * have), while a data-parallel job runs its OpenMP team inside the rank,
 * because it needs MPI.
 *
 * What it deliberately does not do: survive the loss of a rank (Open MPI
 * ends the whole run; the store makes the next run resume), or move data:
 * the store and the data set must be on a file system every node sees.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "config.h"
#include "error.h"
#include "runner_mpi.h"

enum { TAG_RUN = 1, TAG_DP, TAG_STOP, TAG_LINE, TAG_DONE, TAG_GROUP = 100 };

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *fmt_time(double s, char *buf, size_t len)
{
	if (s < 60)
		snprintf(buf, len, "%.0fs", s);
	else if (s < 3600)
		snprintf(buf, len, "%.0fm%02.0fs", floor(s / 60), fmod(s, 60));
	else
		snprintf(buf, len, "%.0fh%02.0fm", floor(s / 3600),
			 fmod(s / 60, 60));
	return buf;
}

/* Writes all of buf (a pipe), retrying on EINTR. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		buf += w;
		len -= (size_t)w;
	}
	return 0;
}

/* ---- the launcher (a process without MPI) ---------------------------------------
 *
 * Commands (rank -> launcher), one a line: "R <job>" starts a job process.
 * End of file: the rank is done; the launcher kills what still runs and
 * exits. Events (launcher -> rank), one a line: "<job> <line>" for each
 * progress line of a job ("P ...", "S ...", "E ..."), then "<job> X
 * <wait status>" when it has exited and its pipe is drained.
 */

typedef struct ljob {
	pid_t pid;
	int fd; /* read end of its progress pipe, -1 once drained */
	int exited, status;
	char buf[1024];
	size_t blen;
} ljob;

typedef struct lstate {
	runner *R;
	int n, cmd, ev;
	ljob *jobs;
	int running;
} lstate;

/* Tells the rank that job i could not start. */
static void launch_failed(lstate *S, int i, const char *what)
{
	char line[NB_ERR_LEN];
	snprintf(line, sizeof line, "%d E %s: %s\n%d X 256\n", i, what,
		 strerror(errno), i);
	write_all(S->ev, line, strlen(line));
}

/* Forks job i's process; its progress lines come back through a pipe. */
static void launch(lstate *S, int i)
{
	int p[2];
	if (pipe(p) != 0) {
		launch_failed(S, i, "pipe");
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		close(S->cmd);
		close(S->ev);
		for (int o = 0; o < S->n; o++)
			if (S->jobs[o].fd >= 0)
				close(S->jobs[o].fd);
		_exit(nb__runner_job_child(S->R, i, p[1], NULL));
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		launch_failed(S, i, "fork");
		return;
	}
	fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
	ljob *j = &S->jobs[i];
	j->pid = pid;
	j->fd = p[0];
	j->exited = 0;
	j->blen = 0;
	S->running++;
}

/* Splits buf (len bytes, NUL-terminated) into lines, calling fn on each;
 * keeps the unfinished rest; drops an over-long line. */
static void each_line(char *buf, size_t *len, size_t cap,
		      void (*fn)(void *ctx, char *line), void *ctx)
{
	char *nl;
	while ((nl = strchr(buf, '\n'))) {
		*nl = 0;
		fn(ctx, buf);
		size_t rest = *len - (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, rest);
		*len = rest;
		buf[rest] = 0;
	}
	if (*len == cap - 1)
		*len = 0;
}

static void on_command(void *ctx, char *line)
{
	lstate *S = ctx;
	int i;
	if (sscanf(line, "R %d", &i) == 1 && i >= 0 && i < S->n &&
	    S->jobs[i].pid <= 0)
		launch(S, i);
}

typedef struct relay {
	lstate *S;
	int job;
} relay;

static void on_job_line(void *ctx, char *line)
{
	relay *r = ctx;
	char out[1100];
	snprintf(out, sizeof out, "%d %s\n", r->job, line);
	if (write_all(r->S->ev, out, strlen(out)) < 0)
		_exit(1); /* the rank is gone */
}

static void launcher_main(runner *R, int cmd, int ev)
{
	lstate S = {R, nb__runner_n_jobs(R), cmd, ev, NULL, 0};
	S.jobs = calloc((size_t)S.n + 1, sizeof *S.jobs);
	struct pollfd *pf = calloc((size_t)S.n + 1, sizeof *pf);
	int *map = calloc((size_t)S.n + 1, sizeof *map);
	if (!S.jobs || !pf || !map)
		_exit(1);
	for (int i = 0; i < S.n; i++)
		S.jobs[i].fd = -1;
	signal(SIGPIPE, SIG_IGN);
	char cbuf[4096];
	size_t clen = 0;
	int open_cmd = 1;
	while (open_cmd || S.running) {
		int np = 0;
		if (open_cmd) {
			pf[np] = (struct pollfd){cmd, POLLIN, 0};
			map[np++] = -1;
		}
		for (int i = 0; i < S.n; i++)
			if (S.jobs[i].fd >= 0) {
				pf[np] = (struct pollfd){S.jobs[i].fd, POLLIN, 0};
				map[np++] = i;
			}
		poll(pf, (nfds_t)np, 200);
		for (int k = 0; k < np; k++) {
			if (!pf[k].revents)
				continue;
			if (map[k] < 0) {
				ssize_t r = read(cmd, cbuf + clen,
						 sizeof cbuf - 1 - clen);
				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0) {
					/* the rank is gone or done */
					open_cmd = 0;
					for (int i = 0; i < S.n; i++)
						if (S.jobs[i].pid > 0 &&
						    !S.jobs[i].exited)
							kill(S.jobs[i].pid, SIGKILL);
					continue;
				}
				clen += (size_t)r;
				cbuf[clen] = 0;
				each_line(cbuf, &clen, sizeof cbuf, on_command, &S);
				continue;
			}
			ljob *j = &S.jobs[map[k]];
			relay rl = {&S, map[k]};
			for (;;) {
				ssize_t r = read(j->fd, j->buf + j->blen,
						 sizeof j->buf - 1 - j->blen);
				if (r < 0 && errno == EINTR)
					continue;
				if (r == 0) {
					close(j->fd);
					j->fd = -1;
				}
				if (r <= 0)
					break;
				j->blen += (size_t)r;
				j->buf[j->blen] = 0;
				each_line(j->buf, &j->blen, sizeof j->buf,
					  on_job_line, &rl);
			}
		}
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
			for (int i = 0; i < S.n; i++)
				if (S.jobs[i].pid == pid && !S.jobs[i].exited) {
					S.jobs[i].exited = 1;
					S.jobs[i].status = status;
				}
		/* an exit is reported after the job's last line */
		for (int i = 0; i < S.n; i++) {
			ljob *j = &S.jobs[i];
			if (j->pid <= 0 || !j->exited || j->fd >= 0)
				continue;
			char line[64];
			snprintf(line, sizeof line, "%d X %d\n", i, j->status);
			if (open_cmd && write_all(ev, line, strlen(line)) < 0)
				_exit(1);
			j->pid = 0;
			S.running--;
		}
	}
	_exit(0);
}

typedef struct launcher {
	pid_t pid;
	int cmd, ev;
	char buf[8192];
	size_t blen;
} launcher;

static int launcher_start(runner *R, launcher *L, char *err)
{
	int c[2], e[2];
	if (pipe(c) != 0)
		return nb_errorf(err, NB_EIO, "pipe: %s", strerror(errno));
	if (pipe(e) != 0) {
		close(c[0]);
		close(c[1]);
		return nb_errorf(err, NB_EIO, "pipe: %s", strerror(errno));
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return nb_errorf(err, NB_EIO, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* the launcher and its jobs die with the rank */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(c[1]);
		close(e[0]);
		launcher_main(R, c[0], e[1]);
	}
	close(c[0]);
	close(e[1]);
	fcntl(e[0], F_SETFL, fcntl(e[0], F_GETFL) | O_NONBLOCK);
	fcntl(c[1], F_SETFD, FD_CLOEXEC);
	fcntl(e[0], F_SETFD, FD_CLOEXEC);
	L->pid = pid;
	L->cmd = c[1];
	L->ev = e[0];
	L->blen = 0;
	return 0;
}

static void launcher_stop(launcher *L)
{
	if (L->cmd >= 0)
		close(L->cmd);
	L->cmd = -1;
	if (L->pid > 0) {
		int status;
		while (waitpid(L->pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	L->pid = 0;
	if (L->ev >= 0)
		close(L->ev);
	L->ev = -1;
}

static void launcher_run(launcher *L, int job)
{
	char line[32];
	snprintf(line, sizeof line, "R %d\n", job);
	write_all(L->cmd, line, strlen(line));
}

/* ---- the executor's state ------------------------------------------------------- */

enum { S_PENDING, S_RUNNING, S_DONE, S_FAILED };

typedef struct xjob {
	nb_job_info info;
	int state;
	int rank;           /* where it runs (the group's leader) */
	int group;          /* ranks in its data-parallel group, or 1 */
	int *members;       /* the group's ranks (group > 1) */
	int dependents;     /* jobs that wait for it, directly or not */
	double started;
	char status[160];
	char why[NB_ERR_LEN];
} xjob;

typedef struct exec {
	runner *R;
	const nb_run_options *o;
	int rank, size;
	int slots;          /* jobs at once per rank */
	int dp;             /* largest data-parallel group (0: off) */
	int n, total, done;
	xjob *jobs;
	int *running;       /* per rank: jobs running */
	int *in_group;      /* per rank: in a data-parallel group */
	launcher L;
	int live_lines;
	int stop;           /* workers: rank 0 said stop */
} exec;

static void clear_live(exec *X)
{
	if (!X->o->live || !X->live_lines)
		return;
	for (int i = 0; i < X->live_lines; i++)
		fputs("\033[A\033[2K", stderr);
	fputs("\r", stderr);
	X->live_lines = 0;
}

static void say(exec *X, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(exec *X, const char *fmt, ...)
{
	if (X->o->quiet)
		return;
	clear_live(X);
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static void draw_live(exec *X)
{
	if (!X->o->live || X->o->quiet)
		return;
	clear_live(X);
	int lines = 0;
	for (int i = 0; i < X->n; i++) {
		xjob *j = &X->jobs[i];
		if (j->state != S_RUNNING)
			continue;
		char el[32], where[32];
		if (j->group > 1)
			snprintf(where, sizeof where, "ranks %d+%d", j->rank,
				 j->group - 1);
		else
			snprintf(where, sizeof where, "rank %d", j->rank);
		fprintf(stderr, "\033[2K  %-46s %-10s %s  [%s]\n",
			j->info.name, where, j->status,
			fmt_time(now_s() - j->started, el, sizeof el));
		lines++;
	}
	fprintf(stderr, "\033[2K  %d/%d jobs finished on %d ranks\n", X->done,
		X->total, X->size);
	X->live_lines = lines + 1;
	fflush(stderr);
}

/* A progress line of job i (rank 0). */
static void job_line(exec *X, int i, const char *line)
{
	if (i < 0 || i >= X->n)
		return;
	xjob *j = &X->jobs[i];
	if (line[0] == 'E' && line[1] == ' ') {
		snprintf(j->why, sizeof j->why, "%s", line + 2);
		return;
	}
	if (!line[0] || line[1] != ' ')
		return;
	const char *text = line + 2;
	if (line[0] == 'P') {
		char copy[128];
		snprintf(copy, sizeof copy, "%s", text);
		char *eta = strchr(copy, '|');
		double left = 0;
		if (eta) {
			*eta = 0;
			left = atof(eta + 1);
		}
		char t[32];
		snprintf(j->status, sizeof j->status, "%s  ETA %s", copy,
			 fmt_time(left, t, sizeof t));
		if (!X->o->live)
			say(X, "%s: %s\n", j->info.name, j->status);
	} else if (line[0] == 'S') {
		snprintf(j->status, sizeof j->status, "%s", text);
	}
}

/* Job i has ended on its rank(s) (rank 0): frees them, checks the store. */
static void job_exit(exec *X, int i, int status)
{
	if (i < 0 || i >= X->n || X->jobs[i].state != S_RUNNING)
		return;
	xjob *j = &X->jobs[i];
	if (j->group > 1)
		for (int k = 0; k < j->group; k++)
			X->in_group[j->members[k]] = 0;
	else
		X->running[j->rank]--;
	X->done++;
	nb_model_summary sum;
	const char *why = j->why;
	char sig[64];
	if (!j->why[0] && WIFSIGNALED(status)) {
		snprintf(sig, sizeof sig, "killed by signal %d", WTERMSIG(status));
		why = sig;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
	    nb__runner_job_result(X->R, i, NULL, &sum)) {
		j->state = S_DONE;
		char t[32];
		say(X, "done   %s: %s, best %.2f%% (epoch %d), %s\n",
		    j->info.name, sum.status, sum.best_acc, sum.best_epoch,
		    fmt_time(now_s() - j->started, t, sizeof t));
		return;
	}
	nb__runner_job_result(X->R, i, why, NULL);
	j->state = S_FAILED;
	clear_live(X);
	fprintf(stderr, "nasty-bench: job %s failed: %s\n", j->info.name,
		why && *why ? why : "the job ended without a verified artefact");
}

/* One launcher event: rank 0 handles it, a worker forwards it to rank 0. */
static void on_event(void *ctx, char *line)
{
	exec *X = ctx;
	int i, status, off = 0;
	if (sscanf(line, "%d %n", &i, &off) != 1 || off == 0)
		return;
	const char *rest = line + off;
	int is_exit = sscanf(rest, "X %d", &status) == 1;
	if (X->rank == 0) {
		if (is_exit)
			job_exit(X, i, status);
		else
			job_line(X, i, rest);
	} else if (is_exit) {
		int m[2] = {i, status};
		MPI_Send(m, 2, MPI_INT, 0, TAG_DONE, MPI_COMM_WORLD);
		X->running[X->rank]--;
	} else {
		MPI_Send(line, (int)strlen(line) + 1, MPI_CHAR, 0, TAG_LINE,
			 MPI_COMM_WORLD);
	}
}

/* Reads what the launcher has said. */
static void pump_launcher(exec *X)
{
	launcher *L = &X->L;
	for (;;) {
		ssize_t r = read(L->ev, L->buf + L->blen,
				 sizeof L->buf - 1 - L->blen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		L->blen += (size_t)r;
		L->buf[L->blen] = 0;
		each_line(L->buf, &L->blen, sizeof L->buf, on_event, X);
	}
}

/* ---- a data-parallel job, in the ranks of its group ---------------------------- */

typedef struct dp_ctx {
	MPI_Comm comm;
	int job;
	int progress_fd; /* leader: read end of the job's progress pipe */
	char buf[1024];
	size_t blen;
} dp_ctx;

static void on_dp_line(void *ctx, char *line)
{
	dp_ctx *c = ctx;
	char out[sizeof c->buf + 32];
	snprintf(out, sizeof out, "%d %s", c->job, line);
	MPI_Send(out, (int)strlen(out) + 1, MPI_CHAR, 0, TAG_LINE,
		 MPI_COMM_WORLD);
}

/* The leader forwards the job's progress lines to rank 0 (between steps). */
static void dp_pump(dp_ctx *c)
{
	if (c->progress_fd < 0)
		return;
	for (;;) {
		ssize_t r = read(c->progress_fd, c->buf + c->blen,
				 sizeof c->buf - 1 - c->blen);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		c->blen += (size_t)r;
		c->buf[c->blen] = 0;
		each_line(c->buf, &c->blen, sizeof c->buf, on_dp_line, c);
	}
}

/* The group's sums: MPI_Allreduce. For a given group size Open MPI picks
 * its algorithm from the sizes alone and every member gets the same
 * result, so the run is deterministic for a given rank count. */
static int dp_sum_d(void *ctx, double *buf, int n)
{
	dp_ctx *c = ctx;
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM,
			     c->comm) == MPI_SUCCESS
		       ? 0
		       : NB_EIO;
}

static int dp_sum_f(void *ctx, float *buf, int n)
{
	dp_ctx *c = ctx;
	dp_pump(c);
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM,
			     c->comm) == MPI_SUCCESS
		       ? 0
		       : NB_EIO;
}

/* msg: job, group size, the group's ranks (the leader first). */
static void run_dp(exec *X, const int *msg)
{
	int i = msg[0], g = msg[1];
	const nb_job_info *info = &X->jobs[i].info;
	MPI_Group world, grp;
	MPI_Comm comm;
	MPI_Comm_group(MPI_COMM_WORLD, &world);
	MPI_Group_incl(world, g, msg + 2, &grp);
	/* the tag tells apart groups formed at once (MPI_TAG_UB >= 32767) */
	MPI_Comm_create_group(MPI_COMM_WORLD, grp, TAG_GROUP + i % 30000, &comm);
	int me;
	MPI_Comm_rank(comm, &me);
	/* the leader takes the artefact's lock for the group, as a job
	 * process does for itself */
	int go = 1, lock = -1;
	if (me == 0) {
		char path[4096], err[NB_ERR_LEN];
		if (nb_store_path(nb__runner_store(X->R), info->key, "lock", 1,
				  path, sizeof path, err) == 0)
			lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (lock >= 0)
			while (flock(lock, LOCK_EX) != 0 && errno == EINTR)
				;
		nb_model_summary sum;
		if (nb_store_lookup(nb__runner_store(X->R), info->key, &sum,
				    err) == NB_STORE_DONE)
			go = 0;
	}
	MPI_Bcast(&go, 1, MPI_INT, 0, comm);
	int rc = 0;
	if (go) {
		dp_ctx c = {.comm = comm, .job = i, .progress_fd = -1};
		int p[2] = {-1, -1};
		if (me == 0 && pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0)
			c.progress_fd = p[0];
		nb_dist d = {me, g, dp_sum_d, dp_sum_f, &c};
		rc = nb__runner_job_child(X->R, i, p[1], &d);
		if (p[1] >= 0)
			close(p[1]);
		dp_pump(&c);
		if (p[0] >= 0)
			close(p[0]);
	}
	if (rc != 0) {
		/* the other members may wait in a sum that never comes */
		fprintf(stderr,
			"nasty-bench: rank %d: data-parallel job %s failed; stopping the run (run it again to resume from the store)\n",
			X->rank, info->name);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	if (lock >= 0)
		close(lock);
	MPI_Comm_free(&comm);
	MPI_Group_free(&grp);
	MPI_Group_free(&world);
	if (me == 0) {
		int m[2] = {i, 0};
		MPI_Send(m, 2, MPI_INT, 0, TAG_DONE, MPI_COMM_WORLD);
	}
}

/* ---- messages ------------------------------------------------------------------ */

static void handle_messages(exec *X)
{
	for (;;) {
		int flag = 0;
		MPI_Status st;
		MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag,
			   &st);
		if (!flag)
			return;
		int count;
		if (st.MPI_TAG == TAG_LINE) {
			MPI_Get_count(&st, MPI_CHAR, &count);
			char *line = malloc((size_t)count + 1);
			if (!line)
				return;
			MPI_Recv(line, count, MPI_CHAR, st.MPI_SOURCE, TAG_LINE,
				 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			line[count] = 0;
			int i, off = 0;
			if (sscanf(line, "%d %n", &i, &off) == 1 && off > 0)
				job_line(X, i, line + off);
			free(line);
		} else if (st.MPI_TAG == TAG_DONE) {
			int m[2];
			MPI_Recv(m, 2, MPI_INT, st.MPI_SOURCE, TAG_DONE,
				 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			job_exit(X, m[0], m[1]);
		} else if (st.MPI_TAG == TAG_RUN) {
			int i;
			MPI_Recv(&i, 1, MPI_INT, st.MPI_SOURCE, TAG_RUN,
				 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			X->running[X->rank]++;
			launcher_run(&X->L, i);
		} else if (st.MPI_TAG == TAG_DP) {
			MPI_Get_count(&st, MPI_INT, &count);
			int *msg = malloc((size_t)count * sizeof *msg);
			if (!msg)
				return;
			MPI_Recv(msg, count, MPI_INT, st.MPI_SOURCE, TAG_DP,
				 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			run_dp(X, msg);
			free(msg);
		} else if (st.MPI_TAG == TAG_STOP) {
			MPI_Recv(NULL, 0, MPI_INT, st.MPI_SOURCE, TAG_STOP,
				 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			X->stop = 1;
			return;
		} else {
			/* not ours: drop it */
			MPI_Get_count(&st, MPI_BYTE, &count);
			char *junk = malloc((size_t)count + 1);
			MPI_Recv(junk, count, MPI_BYTE, st.MPI_SOURCE,
				 st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			free(junk);
		}
	}
}

/* ---- scheduling (rank 0) -------------------------------------------------------- */

static void start_on(exec *X, int i, int r)
{
	xjob *j = &X->jobs[i];
	j->state = S_RUNNING;
	j->rank = r;
	j->group = 1;
	j->started = now_s();
	snprintf(j->status, sizeof j->status, "starting");
	X->running[r]++;
	say(X, "start  %s (rank %d)\n", j->info.name, r);
	if (r == 0)
		launcher_run(&X->L, i);
	else
		MPI_Send(&i, 1, MPI_INT, r, TAG_RUN, MPI_COMM_WORLD);
}

static void start_group(exec *X, int i, const int *ranks, int g)
{
	xjob *j = &X->jobs[i];
	int *msg = malloc(((size_t)g + 2) * sizeof *msg);
	free(j->members);
	j->members = malloc((size_t)g * sizeof *j->members);
	if (!msg || !j->members) {
		free(msg);
		return;
	}
	msg[0] = i;
	msg[1] = g;
	for (int k = 0; k < g; k++) {
		msg[2 + k] = ranks[k];
		j->members[k] = ranks[k];
		X->in_group[ranks[k]] = 1;
	}
	j->state = S_RUNNING;
	j->rank = ranks[0];
	j->group = g;
	j->started = now_s();
	snprintf(j->status, sizeof j->status, "starting");
	say(X, "start  %s (data-parallel on ranks %d..%d)\n", j->info.name,
	    ranks[0], ranks[g - 1]);
	for (int k = 0; k < g; k++)
		MPI_Send(msg, g + 2, MPI_INT, ranks[k], TAG_DP, MPI_COMM_WORLD);
	free(msg);
}

/* Critical path first: more dependents, then the longer job. */
static exec *cmp_exec;
static int by_priority(const void *a, const void *b)
{
	const xjob *x = &cmp_exec->jobs[*(const int *)a];
	const xjob *y = &cmp_exec->jobs[*(const int *)b];
	if (x->dependents != y->dependents)
		return y->dependents - x->dependents;
	if (x->info.cost != y->info.cost)
		return x->info.cost < y->info.cost ? 1 : -1;
	return *(const int *)a - *(const int *)b;
}

static void schedule(exec *X, int *ready, int *idle)
{
	int nr = 0;
	for (int i = 0; i < X->n; i++) {
		xjob *j = &X->jobs[i];
		if (!j->info.selected || j->state != S_PENDING)
			continue;
		const char *why;
		if (nb__runner_dep_blocked(X->R, i, &why)) {
			j->state = S_FAILED;
			X->done++;
			say(X, "skip   %s: %s\n", j->info.name, why);
			continue;
		}
		if (j->info.dep >= 0 && X->jobs[j->info.dep].state != S_DONE)
			continue;
		ready[nr++] = i;
	}
	if (!nr)
		return;
	cmp_exec = X;
	qsort(ready, (size_t)nr, sizeof *ready, by_priority);
	/* more ranks idle than jobs ready: the first jobs train on groups
	 * (rank 0 schedules, so it joins none) */
	if (X->dp > 1) {
		int ni = 0;
		for (int r = 1; r < X->size; r++)
			if (!X->running[r] && !X->in_group[r])
				idle[ni++] = r;
		int used = 0, left = nr;
		for (int k = 0; k < nr && ni - used > left; k++) {
			xjob *j = &X->jobs[ready[k]];
			int g = (ni - used) / left;
			if (g > X->dp)
				g = X->dp;
			if (g > j->info.min_batch)
				g = j->info.min_batch;
			left--;
			if (g < 2 || !j->info.dp_ok)
				continue;
			start_group(X, ready[k], idle + used, g);
			used += g;
			ready[k] = -1;
		}
	}
	for (int k = 0; k < nr; k++) {
		if (ready[k] < 0)
			continue;
		int best = -1;
		for (int r = 0; r < X->size; r++)
			if (!X->in_group[r] && X->running[r] < X->slots &&
			    (best < 0 || X->running[r] < X->running[best]))
				best = r;
		if (best < 0)
			return;
		start_on(X, ready[k], best);
	}
}

/* ---- the whole run ------------------------------------------------------------- */

static int root_loop(exec *X, char *err)
{
	int *ready = malloc((size_t)X->n * sizeof *ready + 1);
	int *idle = malloc((size_t)X->size * sizeof *idle);
	if (!ready || !idle) {
		free(ready);
		free(idle);
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	}
	double last_draw = 0;
	int rc = 0;
	while (X->done < X->total) {
		schedule(X, ready, idle);
		int busy = 0;
		for (int r = 0; r < X->size; r++)
			busy += X->running[r] + X->in_group[r];
		if (!busy && X->done < X->total) {
			int pending = 0;
			for (int i = 0; i < X->n; i++)
				pending += X->jobs[i].info.selected &&
					   X->jobs[i].state == S_PENDING;
			if (pending) {
				rc = nb_errorf(err, NB_EINVAL,
					       "%d jobs can never start (a dependency cycle)",
					       pending);
				break;
			}
			continue;
		}
		struct pollfd pf = {X->L.ev, POLLIN, 0};
		poll(&pf, 1, 10);
		pump_launcher(X);
		handle_messages(X);
		if (now_s() - last_draw > 0.5) {
			draw_live(X);
			last_draw = now_s();
		}
	}
	clear_live(X);
	for (int r = 1; r < X->size; r++)
		MPI_Send(NULL, 0, MPI_INT, r, TAG_STOP, MPI_COMM_WORLD);
	free(ready);
	free(idle);
	return rc;
}

static void worker_loop(exec *X)
{
	while (!X->stop) {
		struct pollfd pf = {X->L.ev, POLLIN, 0};
		poll(&pf, 1, 10);
		pump_launcher(X);
		handle_messages(X);
	}
}

int nb_mpi_execute(runner *R, int *is_root, char *err)
{
	exec X;
	memset(&X, 0, sizeof X);
	X.R = R;
	X.o = nb__runner_options(R);
	X.L.cmd = X.L.ev = -1;
	*is_root = 0;
	/* before MPI_Init and before any OpenMP region: see the top */
	int rc = launcher_start(R, &X.L, err);
	if (rc < 0)
		return rc;
	int inited = 0, provided;
	MPI_Initialized(&inited);
	if (!inited &&
	    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) !=
		MPI_SUCCESS) {
		launcher_stop(&X.L);
		return nb_errorf(err, NB_EIO, "MPI_Init failed");
	}
	MPI_Comm_rank(MPI_COMM_WORLD, &X.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &X.size);
	*is_root = X.rank == 0;

	/* every rank must have planned the same graph */
	char mine[65], root[65];
	nb__runner_plan_digest(R, mine);
	memcpy(root, mine, sizeof root);
	MPI_Bcast(root, 65, MPI_CHAR, 0, MPI_COMM_WORLD);
	int differs = strcmp(root, mine) != 0, any = 0;
	MPI_Allreduce(&differs, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (any) {
		rc = nb_errorf(err, NB_EINVAL,
			       "the ranks planned different job graphs (the same suite file, options and data on every node?)");
		goto out;
	}

	X.n = nb__runner_n_jobs(R);
	X.slots = X.o->jobs > 0 ? X.o->jobs : 1;
	/* mpirun binds a rank to one core by default (2 ranks or fewer): its
	 * jobs' threads would then share that core */
	cpu_set_t cpus;
	int want = nb__runner_threads_per_job(R) * X.slots;
	if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 &&
	    CPU_COUNT(&cpus) < want)
		fprintf(stderr,
			"nasty-bench: warning: rank %d is bound to %d CPU%s but runs %d thread%s; start mpirun with --bind-to none (or give each rank its cores), or lower --threads\n",
			X.rank, CPU_COUNT(&cpus), CPU_COUNT(&cpus) == 1 ? "" : "s",
			want, want == 1 ? "" : "s");
	X.dp = X.o->data_parallel > 0 ? X.o->data_parallel
				       : nb__runner_suite(R)->data_parallel;
	X.jobs = calloc((size_t)X.n + 1, sizeof *X.jobs);
	X.running = calloc((size_t)X.size, sizeof *X.running);
	X.in_group = calloc((size_t)X.size, sizeof *X.in_group);
	if (!X.jobs || !X.running || !X.in_group) {
		rc = nb_errorf(err, NB_ENOMEM, "out of memory");
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	for (int i = 0; i < X.n; i++)
		nb__runner_job_info(R, i, &X.jobs[i].info);
	for (int i = 0; i < X.n; i++)
		for (int d = X.jobs[i].info.dep; d >= 0; d = X.jobs[d].info.dep)
			X.jobs[d].dependents++;

	if (X.rank == 0) {
		int reused = 0;
		for (int i = 0; i < X.n; i++) {
			xjob *j = &X.jobs[i];
			if (!j->info.selected)
				continue;
			X.total++;
			char e2[NB_ERR_LEN];
			nb_model_summary sum;
			enum nb_store_state st = nb_store_lookup(
			    nb__runner_store(R), j->info.key, &sum, e2);
			if (st == NB_STORE_DONE) {
				nb__runner_job_result(R, i, NULL, &sum);
				j->state = S_DONE;
				X.done++;
				reused++;
			} else if (st == NB_STORE_CORRUPT) {
				say(&X, "corrupt artefact of %s (%s): training it again\n",
				    j->info.name, e2);
				if (nb_store_discard(nb__runner_store(R),
						     j->info.key, e2) < 0) {
					rc = nb_errorf(err, NB_EIO, "%s", e2);
					MPI_Abort(MPI_COMM_WORLD, 1);
				}
			}
		}
		if (reused)
			say(&X, "reusing %d finished model%s from the store\n",
			    reused, reused == 1 ? "" : "s");
		say(&X, "%d ranks, %d job%s at once on each%s\n", X.size,
		    X.slots, X.slots == 1 ? "" : "s",
		    X.dp > 1 ? ", data-parallel groups for jobs on the critical path"
			     : "");
		rc = root_loop(&X, err);
		if (rc < 0) {
			fprintf(stderr, "nasty-bench: %s\n", err);
			MPI_Abort(MPI_COMM_WORLD, 1);
		}
	} else {
		worker_loop(&X);
	}
out:
	launcher_stop(&X.L);
	if (X.jobs)
		for (int i = 0; i < X.n; i++)
			free(X.jobs[i].members);
	free(X.jobs);
	free(X.running);
	free(X.in_group);
	if (!inited)
		MPI_Finalize();
	return rc;
}
