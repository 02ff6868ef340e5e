/*
 * report.h - the reports of a suite run (column names are a contract:
 * other tools read them; columns are only ever added).
 *
 * results.csv, one row per trained model:
 *   suite,tier,dataset,seed,role,arch,strategy,teacher_arch,
 *   teacher_strategy,attack,epochs,best_acc,last_acc,status,wall_s,key
 *   (+ added: final_kl, the last epoch's tau^2*KL term of a teacher)
 * role is teacher or student; a teacher row has its strategy and empty
 * teacher_* and attack; a student row has empty strategy, its teacher's
 * arch and strategy, and its attack (`scratch` for a baseline, with empty
 * teacher_*); accuracies in percent; status ok, diverged or failed.
 *
 * gaps.csv, one row per (teacher arch, defence, student arch, attack):
 *   dataset,teacher_arch,defense,student_arch,attack,seeds,
 *   teacher_normal_acc,teacher_defended_acc,teacher_gap,
 *   student_baseline_acc,student_from_normal_acc,
 *   student_from_defended_acc,gap_vs_normal,gap_vs_baseline
 *   (+ a _std column after each mean when there is more than one seed)
 * Rows are in the info's orders (teacher arch, defence, student, attack;
 * the attack `scratch` is skipped). seeds is info->n_seeds. The *_acc
 * columns are means over seeds of the best accuracies (%.2f); their _std
 * twins are sample std (n-1), empty with one value. teacher_gap,
 * gap_vs_normal and gap_vs_baseline are differences of those means
 * (defended minus reference, in points), without a std. Models that did
 * not finish ok are left out of means; a mean or gap with no value is
 * empty.
 *
 * report.md: the access each attack had (info->attack_access), then per
 * attack a table laid out like the paper's (rows: student
 * baseline, each teacher arch with the normal strategy, then with each
 * defence; columns: teacher accuracy (gap to normal), then each student's
 * accuracy (gap to its baseline)), with the tier, seeds, threads, versions
 * and wall time stated, and how nasty each teacher became (final tau^2*KL,
 * mean over seeds); then the grids of images data-free attacks
 * synthesised, DIR/images/KEY.png, for the students that have one; then
 * links to each model's per-epoch log, logs/KEY.csv, relative to DIR (the
 * runner copies both there). A cell says "acc" or "mean ± std"
 * with "(+d.dd)" against its reference, "[k of n diverged]" when some seeds
 * did not count, "diverged"/"failed" when none did, "—" with no model.
 *
 * results.csv numbers: accuracies %.2f, wall_s %.1f, final_kl %.4f; a
 * value that is not finite is an empty cell.
 */
#ifndef NASTY_BENCH_REPORT_H
#define NASTY_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

typedef struct nb_result {
	char suite[64], tier[64], dataset[64];
	uint64_t seed;
	char role[16]; /* "teacher" or "student" */
	char arch[64];
	char strategy[64];         /* teachers */
	char teacher_arch[64];     /* students */
	char teacher_strategy[64]; /* students */
	char attack[64];           /* students: "scratch" or a plugin */
	int epochs;
	double best_acc, last_acc;
	char status[16];
	double wall_s;
	char key[65];
	double final_kl; /* NAN when not applicable */
} nb_result;

typedef struct nb_report_info {
	const char *suite, *tier, *dataset;
	const char *version;  /* nasty-bench version */
	const char *command;  /* the command line, for the record */
	int n_seeds;
	int threads, jobs;
	double wall_s;        /* of the whole run */
	const char *const *students;      /* column order of report.md */
	int n_students;
	const char *const *teachers;      /* row order */
	int n_teachers;
	const char *const *defenses;      /* row order (besides normal) */
	int n_defenses;
	const char *const *attacks;       /* one table each */
	int n_attacks;
	/* NULL, or per attack (parallel to attacks, entries may be NULL)
	 * the access it had, as nb_access_describe words */
	const char *const *attack_access;
} nb_report_info;

/* Writes DIR/results.csv, DIR/gaps.csv and DIR/report.md, each atomically
 * (DIR must exist: NB_EIO otherwise). When md is not NULL the Markdown up
 * to the list of logs (title, tables) is also written there, after the
 * file is in place. rows are read only; the caller owns everything.
 * Returns 0 or a negative NB_E* code with err filled. */
int nb_report_write(const char *dir, const nb_report_info *info,
		    const nb_result *rows, int n, FILE *md, char *err);

#endif
