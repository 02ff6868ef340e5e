/*
 * runner.h - runs a suite's whole matrix: plans the job graph, trains every
 * model it does not find finished in the artefact store, and writes the
 * reports.
 *
 * The graph, for each seed: a normal teacher per teacher architecture; a
 * defended teacher per (teacher architecture, defence), depending on the
 * normal teacher it trains against; a scratch student per student
 * architecture; and a student per (teacher job, student architecture,
 * attack), depending on its teacher. Jobs run in dependency order, up to
 * `jobs` at once, each in its own process with threads/jobs threads, so a
 * crashing job cannot take the runner or the others down. Every finished
 * model is an artefact in the store (store.h); a killed run resumes at the
 * last finished epoch of each unfinished model.
 */
#ifndef NASTY_BENCH_RUNNER_H
#define NASTY_BENCH_RUNNER_H

#include <stdint.h>
#include <stdio.h>

#include "suite.h"

typedef struct nb_run_options {
	const char *out;      /* reports folder (created) */
	const char *store;    /* artefact store folder (created) */
	const char *data_dir; /* overrides the suite's, or NULL */
	int threads;          /* total threads; 0 = all cores */
	int jobs;             /* concurrent jobs; 0 = 1 */
	const uint64_t *seeds; /* overrides the suite's seeds when n_seeds */
	int n_seeds;
	const char *only;     /* comma-separated globs over job names, or NULL */
	int dry_run;          /* print the plan with estimated cost, run nothing */
	int quiet;            /* only errors and the final table */
	int live;             /* redraw live progress lines (a terminal) */
	const char *command;  /* the command line, for the report */
	/* Under mpirun (configure --with-mpi): the largest group of ranks
	 * that trains one job data-parallel when more ranks are idle than
	 * jobs are ready; 0 or 1 = every job on one rank. */
	int data_parallel;
} nb_run_options;

/*
 * Runs suite s. Returns 0 when every job finished (ok or diverged), 1 when
 * some failed (the reports still cover the rest), or a negative code with
 * err filled when the run could not start or the reports not be written.
 */
int nb_run_suite(const nb_suite *s, nb_registry *reg,
		 const nb_run_options *o, char *err);

/*
 * This process's rank when an MPI launcher (mpirun, srun) started more than
 * one (from the environment, before any MPI call), else 0. Under mpirun
 * nb_run_suite runs the matrix across the ranks when built with MPI
 * (configure --with-mpi) and fails with a message otherwise; only rank 0
 * prints and writes the reports.
 */
int nb_run_rank(void);

#endif
