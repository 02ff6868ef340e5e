/*
 * report.c - the three reports of a suite run, written from the rows of its
 * trained models: results.csv (one row per model, as given), gaps.csv (one
 * row per teacher arch, defence, student arch and attack: means over seeds
 * and the gaps between them) and report.md (the paper's tables, one per
 * attack, and how nasty each teacher became).
 *
 * Everything is computed from the rows; nothing is read from the store.
 * A model counts in a mean only when its status is ok and its best accuracy
 * is finite; a cell with no such model is empty in the CSV and says "—",
 * "diverged" or "failed" in the Markdown. Order comes from the info's lists,
 * never from the order of the rows, so two runs give the same files.
 *
 * It deliberately does not sort, rank or judge significance: the numbers
 * and their spread are reported, the reading is the user's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "error.h"
#include "report.h"
#include "train.h"

/* ---- selecting rows and summarising a cell --------------------------------
 */

/* Which rows make up one cell; a NULL field matches anything. */
typedef struct row_sel {
	const char *role, *arch, *strategy;
	const char *teacher_arch, *teacher_strategy, *attack;
} row_sel;

/* One cell over seeds: how many models, how many finished ok, and the
 * mean and sample std (n-1) of the chosen value over the ok ones. */
typedef struct cell_stat {
	int rows, ok, diverged;
	double mean; /* NAN when ok == 0 */
	double std;  /* NAN when ok < 2 */
} cell_stat;

enum cell_value { VALUE_BEST_ACC, VALUE_FINAL_KL };

static int field_matches(const char *want, const char *have)
{
	return !want || strcmp(want, have) == 0;
}

static int row_matches(const row_sel *s, const nb_result *r)
{
	return field_matches(s->role, r->role) &&
	       field_matches(s->arch, r->arch) &&
	       field_matches(s->strategy, r->strategy) &&
	       field_matches(s->teacher_arch, r->teacher_arch) &&
	       field_matches(s->teacher_strategy, r->teacher_strategy) &&
	       field_matches(s->attack, r->attack);
}

static double row_value(const nb_result *r, enum cell_value v)
{
	return v == VALUE_BEST_ACC ? r->best_acc : r->final_kl;
}

static int row_counts(const nb_result *r, enum cell_value v)
{
	return strcmp(r->status, "ok") == 0 && isfinite(row_value(r, v));
}

static cell_stat cell_collect(const nb_result *rows, int n, const row_sel *s,
			      enum cell_value v)
{
	cell_stat st = {0, 0, 0, NAN, NAN};
	double sum = 0;
	for (int i = 0; i < n; i++) {
		if (!row_matches(s, &rows[i]))
			continue;
		st.rows++;
		st.diverged += strcmp(rows[i].status, "diverged") == 0;
		if (row_counts(&rows[i], v)) {
			st.ok++;
			sum += row_value(&rows[i], v);
		}
	}
	if (st.ok == 0)
		return st;
	st.mean = sum / st.ok;
	if (st.ok < 2)
		return st;
	/* two passes: the textbook one-pass formula loses digits */
	double ss = 0;
	for (int i = 0; i < n; i++)
		if (row_matches(s, &rows[i]) && row_counts(&rows[i], v)) {
			double d = row_value(&rows[i], v) - st.mean;
			ss += d * d;
		}
	st.std = sqrt(ss / (st.ok - 1));
	return st;
}

static row_sel teacher_sel(const char *arch, const char *strategy)
{
	return (row_sel){"teacher", arch, strategy, NULL, NULL, NULL};
}

static row_sel baseline_sel(const char *student)
{
	return (row_sel){"student", student, NULL, NULL, NULL, "scratch"};
}

static row_sel student_sel(const char *student, const char *tarch,
			   const char *tstrategy, const char *attack)
{
	return (row_sel){"student", student, NULL, tarch, tstrategy, attack};
}

/* a - b rounded to the printed 2 decimals, without a negative zero */
static double gap(double a, double b)
{
	double d = round((a - b) * 100.0) / 100.0;
	return d == 0 ? 0.0 : d;
}

/* ---- results.csv ---------------------------------------------------------
 */

static const char *const results_header[] = {
    "suite",	"tier",		"dataset",
    "seed",	"role",		"arch",
    "strategy", "teacher_arch", "teacher_strategy",
    "attack",	"epochs",	"best_acc",
    "last_acc", "status",	"wall_s",
    "key",	"final_kl"};
#define RESULTS_COLS ((int)(sizeof results_header / sizeof results_header[0]))

/* "%.<prec>f" of x into buf, or "" when x is not finite */
static const char *fmt_num(char *buf, size_t len, int prec, double x)
{
	if (isfinite(x))
		snprintf(buf, len, "%.*f", prec, x);
	else
		buf[0] = '\0';
	return buf;
}

static int write_results(const char *path, const nb_result *rows, int n,
			 char *err)
{
	nb_csv *t = nb_csv_new(results_header, RESULTS_COLS);
	if (!t)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	for (int i = 0; i < n; i++) {
		const nb_result *r = &rows[i];
		char seed[24], epochs[16], best[32], last[32], wall[32], kl[32];
		snprintf(seed, sizeof seed, "%llu",
			 (unsigned long long)r->seed);
		snprintf(epochs, sizeof epochs, "%d", r->epochs);
		const char *cells[] = {
		    r->suite,
		    r->tier,
		    r->dataset,
		    seed,
		    r->role,
		    r->arch,
		    r->strategy,
		    r->teacher_arch,
		    r->teacher_strategy,
		    r->attack,
		    epochs,
		    fmt_num(best, sizeof best, 2, r->best_acc),
		    fmt_num(last, sizeof last, 2, r->last_acc),
		    r->status,
		    fmt_num(wall, sizeof wall, 1, r->wall_s),
		    r->key,
		    fmt_num(kl, sizeof kl, 4, r->final_kl)};
		if (nb_csv_add_row(t, cells) < 0) {
			nb_csv_free(t);
			return nb_errorf(err, NB_ENOMEM, "%s: out of memory",
					 path);
		}
	}
	int rc = nb_csv_write(t, path, err);
	nb_csv_free(t);
	return rc;
}

/* ---- gaps.csv ------------------------------------------------------------
 */

/* The contract's columns; `mean` ones get a _std twin with several seeds. */
static const struct gaps_col {
	const char *name;
	int mean;
} gaps_cols[] = {
    {"dataset", 0},
    {"teacher_arch", 0},
    {"defense", 0},
    {"student_arch", 0},
    {"attack", 0},
    {"seeds", 0},
    {"teacher_normal_acc", 1},
    {"teacher_defended_acc", 1},
    {"teacher_gap", 0},
    {"student_baseline_acc", 1},
    {"student_from_normal_acc", 1},
    {"student_from_defended_acc", 1},
    {"gap_vs_normal", 0},
    {"gap_vs_baseline", 0},
};
#define GAPS_CONTRACT_COLS ((int)(sizeof gaps_cols / sizeof gaps_cols[0]))
#define GAPS_MAX_COLS (2 * GAPS_CONTRACT_COLS)
#define CELL_LEN 32 /* a formatted number */

static int is_scratch(const char *attack)
{
	return strcmp(attack, "scratch") == 0;
}

/* Appends a mean (and its std when with_std) as cells. */
static void put_mean(char cells[][CELL_LEN], int *c, const cell_stat *st,
		     int with_std)
{
	fmt_num(cells[*c], CELL_LEN, 2, st->mean);
	(*c)++;
	if (with_std) {
		fmt_num(cells[*c], CELL_LEN, 2, st->std);
		(*c)++;
	}
}

static void put_gap(char cells[][CELL_LEN], int *c, const cell_stat *a,
		    const cell_stat *b)
{
	if (a->ok && b->ok)
		snprintf(cells[*c], CELL_LEN, "%.2f", gap(a->mean, b->mean));
	else
		cells[*c][0] = '\0';
	(*c)++;
}

/* One gaps.csv row: teacher arch ta defended by def, student st, attack at. */
static int add_gaps_row(nb_csv *t, const nb_report_info *info,
			const nb_result *rows, int n, const char *ta,
			const char *def, const char *st, const char *at)
{
	int with_std = info->n_seeds > 1;
	row_sel sel[] = {teacher_sel(ta, "normal"), teacher_sel(ta, def),
			 baseline_sel(st), student_sel(st, ta, "normal", at),
			 student_sel(st, ta, def, at)};
	cell_stat tn = cell_collect(rows, n, &sel[0], VALUE_BEST_ACC);
	cell_stat td = cell_collect(rows, n, &sel[1], VALUE_BEST_ACC);
	cell_stat base = cell_collect(rows, n, &sel[2], VALUE_BEST_ACC);
	cell_stat fn = cell_collect(rows, n, &sel[3], VALUE_BEST_ACC);
	cell_stat fd = cell_collect(rows, n, &sel[4], VALUE_BEST_ACC);

	char cells[GAPS_MAX_COLS][CELL_LEN];
	const char *p[GAPS_MAX_COLS];
	p[0] = info->dataset ? info->dataset : "";
	p[1] = ta;
	p[2] = def;
	p[3] = st;
	p[4] = at;
	snprintf(cells[5], CELL_LEN, "%d", info->n_seeds);
	int c = 6;
	put_mean(cells, &c, &tn, with_std);
	put_mean(cells, &c, &td, with_std);
	put_gap(cells, &c, &td, &tn);
	put_mean(cells, &c, &base, with_std);
	put_mean(cells, &c, &fn, with_std);
	put_mean(cells, &c, &fd, with_std);
	put_gap(cells, &c, &fd, &fn);
	put_gap(cells, &c, &fd, &base);
	for (int k = 5; k < c; k++)
		p[k] = cells[k];
	return nb_csv_add_row(t, p);
}

static int write_gaps(const char *path, const nb_report_info *info,
		      const nb_result *rows, int n, char *err)
{
	const char *header[GAPS_MAX_COLS];
	char std_names[GAPS_CONTRACT_COLS][64];
	int cols = 0;
	for (int i = 0; i < GAPS_CONTRACT_COLS; i++) {
		header[cols++] = gaps_cols[i].name;
		if (info->n_seeds > 1 && gaps_cols[i].mean) {
			snprintf(std_names[i], sizeof std_names[i], "%s_std",
				 gaps_cols[i].name);
			header[cols++] = std_names[i];
		}
	}
	nb_csv *t = nb_csv_new(header, cols);
	if (!t)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);

	/* teacher arch, defence, student, attack: the info's orders */
	int rc = 0;
	for (int ti = 0; ti < info->n_teachers && rc == 0; ti++)
		for (int di = 0; di < info->n_defenses && rc == 0; di++)
			for (int si = 0; si < info->n_students && rc == 0; si++)
				for (int ai = 0;
				     ai < info->n_attacks && rc == 0; ai++) {
					if (is_scratch(info->attacks[ai]))
						continue;
					rc = add_gaps_row(t, info, rows, n,
							  info->teachers[ti],
							  info->defenses[di],
							  info->students[si],
							  info->attacks[ai]);
				}
	if (rc < 0)
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	else
		rc = nb_csv_write(t, path, err);
	nb_csv_free(t);
	return rc;
}

/* ---- report.md -----------------------------------------------------------
 */

/* A name in a table cell: a '|' would split the cell. */
static void md_name(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '|')
			fputc('\\', f);
		fputc(*s, f);
	}
}

/* "mean", "mean ± std", or why there is no number */
static void md_value(FILE *f, const cell_stat *st, int prec)
{
	if (st->ok == 0) {
		if (st->rows == 0)
			fputs("—", f);
		else if (st->diverged == st->rows)
			fputs("diverged", f);
		else
			fputs("failed", f);
		return;
	}
	fprintf(f, "%.*f", prec, st->mean);
	if (st->ok > 1)
		fprintf(f, " ± %.*f", prec, st->std);
}

/* A note when some seeds of a cell with a number did not count. */
static void md_missing(FILE *f, const cell_stat *st)
{
	int lost = st->rows - st->ok;
	if (st->ok == 0 || lost == 0)
		return;
	const char *why = st->diverged == lost ? "diverged"
			  : st->diverged == 0  ? "failed"
					       : "did not finish";
	fprintf(f, " [%d of %d %s]", lost, st->rows, why);
}

/* "acc (±delta)" against ref; no delta when either side has no value. */
static void md_cell(FILE *f, const cell_stat *st, const cell_stat *ref)
{
	fputc(' ', f);
	md_value(f, st, 2);
	if (ref && st->ok && ref->ok)
		fprintf(f, " (%+.2f)", gap(st->mean, ref->mean));
	md_missing(f, st);
	fputs(" |", f);
}

static void md_header(FILE *f, const nb_report_info *info)
{
	fprintf(f, "# nasty-bench report: %s on %s, tier %s\n\n",
		info->suite ? info->suite : "?",
		info->dataset ? info->dataset : "?",
		info->tier ? info->tier : "?");
	fprintf(f,
		"Seeds: %d · threads: %d · jobs: %d · nasty-bench %s · wall "
		"time %.1f s",
		info->n_seeds, info->threads, info->jobs,
		info->version ? info->version : "?", info->wall_s);
	if (info->wall_s >= 60) {
		long s = lround(info->wall_s);
		fprintf(f, " (%ldh %02ldm %02lds)", s / 3600, s / 60 % 60,
			s % 60);
	}
	/* a backtick in the command would end the code span: fence with two */
	const char *cmd = info->command ? info->command : "";
	const char *fence = strchr(cmd, '`') ? "`` " : "`";
	const char *close = strchr(cmd, '`') ? " ``" : "`";
	fprintf(f, " · command: %s%s%s\n\n", fence, cmd, close);
	fputs("Cells are best test accuracies in percent, mean ± sample std "
	      "over the seeds that finished ok; the teacher column gives the "
	      "gap to the normal teacher, each student column the gap to that "
	      "student trained from scratch (defended minus reference, in "
	      "points).\n\n",
	      f);
	if (!info->attack_access)
		return;
	fputs("What each attack had of the teacher (the core hands out "
	      "nothing more):\n\n",
	      f);
	for (int ai = 0; ai < info->n_attacks; ai++)
		if (!is_scratch(info->attacks[ai]) && info->attack_access[ai]) {
			fputs("- ", f);
			md_name(f, info->attacks[ai]);
			fprintf(f, ": %s\n", info->attack_access[ai]);
		}
	fputc('\n', f);
}

static void md_attack_table(FILE *f, const nb_report_info *info,
			    const char *attack, const char *access,
			    const nb_result *rows, int n)
{
	fputs("## Attack: ", f);
	md_name(f, attack);
	if (access)
		fprintf(f, "\n\nAccess: %s.", access);
	fputs("\n\n| Row | Teacher |", f);
	for (int si = 0; si < info->n_students; si++) {
		fputc(' ', f);
		md_name(f, info->students[si]);
		fputs(" |", f);
	}
	fputs("\n|---|---|", f);
	for (int si = 0; si < info->n_students; si++)
		fputs("---|", f);
	fputc('\n', f);

	/* the baselines, which every other row is compared with */
	int ns = info->n_students;
	cell_stat *base = calloc(ns ? (size_t)ns : 1, sizeof *base);
	if (!base)
		return; /* the memstream's close reports the failure */
	fputs("| student baseline (scratch) | — |", f);
	for (int si = 0; si < ns; si++) {
		row_sel s = baseline_sel(info->students[si]);
		base[si] = cell_collect(rows, n, &s, VALUE_BEST_ACC);
		md_cell(f, &base[si], NULL);
	}
	fputc('\n', f);

	for (int ti = 0; ti < info->n_teachers; ti++) {
		const char *ta = info->teachers[ti];
		row_sel s = teacher_sel(ta, "normal");
		cell_stat tn = cell_collect(rows, n, &s, VALUE_BEST_ACC);
		for (int di = -1; di < info->n_defenses; di++) {
			const char *strategy =
			    di < 0 ? "normal" : info->defenses[di];
			fputs("| T ", f);
			md_name(f, ta);
			fputc(' ', f);
			md_name(f, strategy);
			fputs(" |", f);
			s = teacher_sel(ta, strategy);
			cell_stat tc =
			    cell_collect(rows, n, &s, VALUE_BEST_ACC);
			md_cell(f, &tc, di < 0 ? NULL : &tn);
			for (int si = 0; si < ns; si++) {
				s = student_sel(info->students[si], ta,
						strategy, attack);
				cell_stat sc =
				    cell_collect(rows, n, &s, VALUE_BEST_ACC);
				md_cell(f, &sc, &base[si]);
			}
			fputc('\n', f);
		}
	}
	fputc('\n', f);
	free(base);
}

static void md_nastiness(FILE *f, const nb_report_info *info,
			 const nb_result *rows, int n)
{
	if (info->n_teachers == 0)
		return;
	fputs("## How nasty each teacher became\n\n"
	      "The last epoch's tau^2 * KL term (mean over seeds); a teacher "
	      "with a small value is not nasty.\n\n"
	      "| Teacher | Strategy | final tau^2 KL | accuracy |\n"
	      "|---|---|---|---|\n",
	      f);
	for (int ti = 0; ti < info->n_teachers; ti++)
		for (int di = -1; di < info->n_defenses; di++) {
			const char *ta = info->teachers[ti];
			const char *strategy =
			    di < 0 ? "normal" : info->defenses[di];
			row_sel s = teacher_sel(ta, strategy);
			cell_stat kl =
			    cell_collect(rows, n, &s, VALUE_FINAL_KL);
			cell_stat acc =
			    cell_collect(rows, n, &s, VALUE_BEST_ACC);
			fputs("| ", f);
			md_name(f, ta);
			fputs(" | ", f);
			md_name(f, strategy);
			fputs(" | ", f);
			/* a normal teacher has no KL term: "—", not "failed" */
			if (kl.ok == 0 && acc.ok > 0)
				fputs("—", f);
			else
				md_value(f, &kl, 4);
			fputs(" |", f);
			md_cell(f, &acc, NULL);
			fputc('\n', f);
		}
	fputc('\n', f);
}

static void md_logs(FILE *f, const nb_result *rows, int n)
{
	fputs("## Per-epoch logs\n\n", f);
	int any = 0;
	for (int i = 0; i < n; i++) {
		const nb_result *r = &rows[i];
		if (!r->key[0])
			continue;
		any = 1;
		fprintf(f, "- %s %s", r->role, r->arch);
		if (strcmp(r->role, "teacher") == 0)
			fprintf(f, " %s", r->strategy);
		else if (is_scratch(r->attack))
			fputs(" scratch", f);
		else
			fprintf(f, " from %s %s via %s", r->teacher_arch,
				r->teacher_strategy, r->attack);
		fprintf(
		    f,
		    ", seed %llu, %s: [logs/%s.csv](logs/%s.csv)\n",
		    (unsigned long long)r->seed, r->status, r->key, r->key);
	}
	if (!any)
		fputs("(no models)\n", f);
}

/* The grids of images a data-free attack synthesised (DIR/images/KEY.png,
 * copied there by the runner), shown inline, teacher by teacher. */
static void md_images(FILE *f, const char *dir, const nb_result *rows, int n)
{
	int any = 0;
	for (int i = 0; i < n; i++) {
		const nb_result *r = &rows[i];
		if (!r->key[0] || strcmp(r->role, "student") != 0)
			continue;
		char path[4096];
		struct stat sb;
		snprintf(path, sizeof path, "%s/images/%s.png", dir, r->key);
		if (stat(path, &sb) != 0)
			continue;
		if (!any)
			fputs("## Synthesised images\n\n"
			      "The first images each data-free attack "
			      "synthesised from its teacher (de-normalised; one "
			      "class per column).\n\n",
			      f);
		any = 1;
		fprintf(f,
			"- %s from %s %s, student %s, seed %llu: "
			"![%s %s %s](images/%s.png)\n",
			r->attack, r->teacher_arch, r->teacher_strategy,
			r->arch, (unsigned long long)r->seed, r->attack,
			r->teacher_arch, r->teacher_strategy, r->key);
	}
	if (any)
		fputc('\n', f);
}

static int write_markdown(const char *path, const char *dir,
			  const nb_report_info *info, const nb_result *rows,
			  int n, FILE *md, char *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	md_header(f, info);
	for (int ai = 0; ai < info->n_attacks; ai++)
		if (!is_scratch(info->attacks[ai]))
			md_attack_table(f, info, info->attacks[ai],
					info->attack_access
						? info->attack_access[ai]
						: NULL,
					rows, n);
	md_nastiness(f, info, rows, n);
	fflush(f);
	size_t tables_len = len; /* the console gets everything but the logs */
	md_images(f, dir, rows, n);
	md_logs(f, rows, n);
	if (fclose(f) != 0) {
		free(buf);
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	}
	int rc = nb_write_file_atomic(path, buf, len, err);
	if (rc == 0 && md)
		fwrite(buf, 1, tables_len, md);
	free(buf);
	return rc;
}

/* ---- the entry point ----------------------------------------------------
 */

int nb_report_write(const char *dir, const nb_report_info *info,
		    const nb_result *rows, int n, FILE *md, char *err)
{
	if (!dir || !info || n < 0 || (n > 0 && !rows))
		return nb_errorf(err, NB_EINVAL,
				 "nb_report_write: missing folder, info or "
				 "rows");
	if ((info->n_students > 0 && !info->students) ||
	    (info->n_teachers > 0 && !info->teachers) ||
	    (info->n_defenses > 0 && !info->defenses) ||
	    (info->n_attacks > 0 && !info->attacks))
		return nb_errorf(err, NB_EINVAL,
				 "nb_report_write: a list in the info has a "
				 "count but no entries");
	struct stat sb;
	if (stat(dir, &sb) != 0)
		return nb_errorf(err, NB_EIO,
				 "%s: cannot write the reports: the output "
				 "folder does not exist (%s)",
				 dir, strerror(errno));
	if (!S_ISDIR(sb.st_mode))
		return nb_errorf(err, NB_EIO,
				 "%s: cannot write the reports: not a folder",
				 dir);

	size_t plen = strlen(dir) + 32;
	char *path = malloc(plen);
	if (!path)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", dir);
	snprintf(path, plen, "%s/results.csv", dir);
	int rc = write_results(path, rows, n, err);
	if (rc == 0) {
		snprintf(path, plen, "%s/gaps.csv", dir);
		rc = write_gaps(path, info, rows, n, err);
	}
	if (rc == 0) {
		snprintf(path, plen, "%s/report.md", dir);
		rc = write_markdown(path, dir, info, rows, n, md, err);
	}
	free(path);
	return rc;
}
