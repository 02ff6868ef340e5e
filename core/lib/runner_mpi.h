/*
 * runner_mpi.h - what the suite runner (runner.c) and its MPI executor
 * (mpi_runner.c, configure --with-mpi) share, inside the library.
 *
 * runner.c plans the job graph exactly as for one process; under mpirun it
 * hands the execution to nb_mpi_execute instead of its own loop, and writes
 * the reports on rank 0 only. mpi_runner.c sees the plan through the
 * accessors below and runs a job through nb__runner_job_child, in a job
 * process of its launcher or, for a data-parallel group, in the rank.
 */
#ifndef NB_RUNNER_MPI_H
#define NB_RUNNER_MPI_H

#include "dist.h"
#include "runner.h"
#include "store.h"

typedef struct runner runner;

typedef struct nb_job_info {
	const char *name, *key;
	int dep;       /* job index or -1 */
	int selected;  /* part of this run (--only) */
	int reused;    /* found finished in the store */
	double cost;   /* estimated seconds */
	int dp_ok;     /* its training goes through nb_train (data-parallel
			  capable) */
	int min_batch; /* the smallest training batch of an epoch */
} nb_job_info;

int nb__runner_n_jobs(const runner *R);
void nb__runner_job_info(const runner *R, int i, nb_job_info *out);
const nb_run_options *nb__runner_options(const runner *R);
const nb_suite *nb__runner_suite(const runner *R);
nb_store *nb__runner_store(const runner *R);
int nb__runner_threads_per_job(const runner *R);
/* A digest of the whole plan (every job's key, dependency and selection):
 * every rank must have planned the same graph. */
void nb__runner_plan_digest(const runner *R, char out[65]);

/* Trains job i (its progress lines go to fd, -1 for none); dist NULL or a
 * data-parallel group. Returns 0 when the artefact is finished (by this
 * call or before), 1 on failure (a line "E message" on fd). */
int nb__runner_job_child(runner *R, int i, int fd, const nb_dist *dist);

/* Records job i's outcome on rank 0, for the reports: finished when the
 * store holds its verified artefact (sum filled when not NULL, returns 1),
 * otherwise failed with why (returns 0). */
int nb__runner_job_result(runner *R, int i, const char *why,
			  nb_model_summary *sum);
/* Marks job i failed because its dependency failed or diverged; returns 1
 * and fills why when so. */
int nb__runner_dep_blocked(runner *R, int i, const char **why);

/* Whether this process was started by mpirun/srun (environment only: no
 * MPI call), and its rank there (0 when not). */
int nb_mpi_launched(void);
int nb_mpi_env_rank(void);

/*
 * Runs the planned jobs across the ranks of MPI_COMM_WORLD: forks the job
 * launcher, initialises MPI, schedules from rank 0, finalises MPI. On
 * return *is_root tells whether this is rank 0 (which writes the reports).
 * Returns 0 or a negative code with err filled.
 */
int nb_mpi_execute(runner *R, int *is_root, char *err);

#endif
