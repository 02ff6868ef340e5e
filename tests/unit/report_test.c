/*
 * report_test.c - the reports of a suite run from a synthetic set of
 * results: one teacher arch (resnet18) trained normal and nasty, two
 * students (cnn, preresnet20) trained from scratch and distilled by two
 * attacks (kd, kd20), over two seeds, with diverged and missing models.
 * Every expected number below was computed by hand from the table of rows
 * (see the comments next to each expected gaps.csv row).
 *
 * The CSVs are read back with libcsv, so quoting is checked too (the suite
 * name holds a comma).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>
#include <dirent.h>
#include <sys/stat.h>

#include "error.h"
#include "plugin.h"
#include "report.h"
#include "testutil.h"

/* ---- the synthetic run ---------------------------------------------------
 */

/* role, arch, strategy, teacher arch, teacher strategy, attack, seed,
 * best, last, status, final_kl */
typedef struct row_spec {
	const char *role, *arch, *strategy, *tarch, *tstrategy, *attack;
	int seed;
	double best, last;
	const char *status;
	double kl;
} row_spec;

static const row_spec specs[] = {
    /* teachers: normal 95.00/95.20 -> 95.10 ± 0.14; nasty 94.50/94.70 ->
     * 94.60 ± 0.14, gap -0.50; nasty KL 10.5/10.7 -> 10.6000 */
    {"teacher", "resnet18", "normal", "", "", "", 1, 95.00, 94.90, "ok", NAN},
    {"teacher", "resnet18", "normal", "", "", "", 2, 95.20, 95.10, "ok", NAN},
    {"teacher", "resnet18", "nasty", "", "", "", 1, 94.50, 94.40, "ok", 10.5},
    {"teacher", "resnet18", "nasty", "", "", "", 2, 94.70, 94.60, "ok", 10.7},
    /* baselines: cnn 86.60/86.80 -> 86.70 ± 0.14; preresnet20 92.00/92.50
     * -> 92.25 ± 0.35 */
    {"student", "cnn", "", "", "", "scratch", 1, 86.60, 86.50, "ok", NAN},
    {"student", "cnn", "", "", "", "scratch", 2, 86.80, 86.70, "ok", NAN},
    {"student", "preresnet20", "", "", "", "scratch", 1, 92.00, 91.90, "ok",
     NAN},
    {"student", "preresnet20", "", "", "", "scratch", 2, 92.50, 92.40, "ok",
     NAN},
    /* kd: cnn from normal 87.70/87.90 -> 87.80 ± 0.14 (+1.10); from nasty
     * 82.40/82.50 -> 82.45 ± 0.07 (-4.25); preresnet20 from normal
     * 92.40/92.60 -> 92.50 ± 0.14 (+0.25); from nasty 88.00/87.96 -> 87.98
     * ± 0.03 (-4.27) */
    {"student", "cnn", "", "resnet18", "normal", "kd", 1, 87.70, 87.60, "ok",
     NAN},
    {"student", "cnn", "", "resnet18", "normal", "kd", 2, 87.90, 87.80, "ok",
     NAN},
    {"student", "cnn", "", "resnet18", "nasty", "kd", 1, 82.40, 82.30, "ok",
     NAN},
    {"student", "cnn", "", "resnet18", "nasty", "kd", 2, 82.50, 82.40, "ok",
     NAN},
    {"student", "preresnet20", "", "resnet18", "normal", "kd", 1, 92.40, 92.30,
     "ok", NAN},
    {"student", "preresnet20", "", "resnet18", "normal", "kd", 2, 92.60, 92.50,
     "ok", NAN},
    {"student", "preresnet20", "", "resnet18", "nasty", "kd", 1, 88.00, 87.90,
     "ok", NAN},
    {"student", "preresnet20", "", "resnet18", "nasty", "kd", 2, 87.96, 87.90,
     "ok", NAN},
    /* kd20: cnn from normal 87.00/87.20 -> 87.10 ± 0.14 (+0.40); from nasty
     * both seeds diverged; preresnet20 from normal seed 1 only: 92.10
     * (-0.15); from nasty 80.00 and a diverged seed: 80.00 (-12.25) */
    {"student", "cnn", "", "resnet18", "normal", "kd20", 1, 87.00, 86.90, "ok",
     NAN},
    {"student", "cnn", "", "resnet18", "normal", "kd20", 2, 87.20, 87.10, "ok",
     NAN},
    {"student", "cnn", "", "resnet18", "nasty", "kd20", 1, 10.00, NAN,
     "diverged", NAN},
    {"student", "cnn", "", "resnet18", "nasty", "kd20", 2, 11.00, NAN,
     "diverged", NAN},
    {"student", "preresnet20", "", "resnet18", "normal", "kd20", 1, 92.10,
     92.00, "ok", NAN},
    {"student", "preresnet20", "", "resnet18", "nasty", "kd20", 1, 80.00, 79.90,
     "ok", NAN},
    {"student", "preresnet20", "", "resnet18", "nasty", "kd20", 2, 12.00, NAN,
     "diverged", NAN},
};
#define N_SPECS ((int)(sizeof specs / sizeof specs[0]))

static const char *const students[] = {"cnn", "preresnet20"};
static const char *const teachers[] = {"resnet18"};
static const char *const defenses[] = {"nasty"};
static const char *const attacks[] = {"kd", "kd20"};

/* The rows of seeds <= max_seed; returns how many. */
static int make_rows(nb_result *rows, int max_seed)
{
	int n = 0;
	for (int i = 0; i < N_SPECS; i++) {
		const row_spec *s = &specs[i];
		if (s->seed > max_seed)
			continue;
		nb_result *r = &rows[n++];
		memset(r, 0, sizeof *r);
		snprintf(r->suite, sizeof r->suite, "paper, table 1");
		snprintf(r->tier, sizeof r->tier, "quick");
		snprintf(r->dataset, sizeof r->dataset, "cifar10");
		r->seed = (uint64_t)s->seed;
		snprintf(r->role, sizeof r->role, "%s", s->role);
		snprintf(r->arch, sizeof r->arch, "%s", s->arch);
		snprintf(r->strategy, sizeof r->strategy, "%s", s->strategy);
		snprintf(r->teacher_arch, sizeof r->teacher_arch, "%s",
			 s->tarch);
		snprintf(r->teacher_strategy, sizeof r->teacher_strategy, "%s",
			 s->tstrategy);
		snprintf(r->attack, sizeof r->attack, "%s", s->attack);
		r->epochs = 3;
		r->best_acc = s->best;
		r->last_acc = s->last;
		snprintf(r->status, sizeof r->status, "%s", s->status);
		r->wall_s = 100.0 + i + 0.2;
		snprintf(r->key, sizeof r->key, "%064d", i);
		r->final_kl = s->kl;
	}
	return n;
}

static nb_report_info make_info(int n_seeds)
{
	nb_report_info info = {0};
	info.suite = "paper, table 1";
	info.tier = "quick";
	info.dataset = "cifar10";
	info.version = "0.1-test";
	info.command = "nasty-bench run suites/paper.ini --tier quick";
	info.n_seeds = n_seeds;
	info.threads = 4;
	info.jobs = 2;
	info.wall_s = 3723.0;
	info.students = students;
	info.n_students = 2;
	info.teachers = teachers;
	info.n_teachers = 1;
	info.defenses = defenses;
	info.n_defenses = 1;
	info.attacks = attacks;
	info.n_attacks = 2;
	return info;
}

/* ---- reading a CSV back with libcsv --------------------------------------
 */

#define MAX_ROWS 64
#define MAX_COLS 32

typedef struct table {
	char *cell[MAX_ROWS][MAX_COLS];
	int ncols[MAX_ROWS];
	int rows;
	int overflow;
} table;

static void on_field(void *s, size_t len, void *data)
{
	table *t = data;
	if (t->rows >= MAX_ROWS || t->ncols[t->rows] >= MAX_COLS) {
		t->overflow = 1;
		return;
	}
	t->cell[t->rows][t->ncols[t->rows]++] = strndup(s ? s : "", len);
}

static void on_row(int c, void *data)
{
	(void)c;
	table *t = data;
	if (t->rows < MAX_ROWS)
		t->rows++;
	else
		t->overflow = 1;
}

static void table_free(table *t)
{
	for (int r = 0; r < MAX_ROWS; r++)
		for (int c = 0; c < MAX_COLS; c++)
			free(t->cell[r][c]);
	memset(t, 0, sizeof *t);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	size_t cap = 0, n = 0;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = cap ? 2 * cap : 8192;
			buf = realloc(buf, cap);
		}
		size_t got = fread(buf + n, 1, 4096, f);
		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* Parses dir/name into t; returns 0 on success. */
static int read_csv(const char *dir, const char *name, table *t)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	size_t len;
	char *buf = slurp(path, &len);
	if (!buf)
		return -1;
	memset(t, 0, sizeof *t);
	struct csv_parser p;
	csv_init(&p, CSV_STRICT | CSV_STRICT_FINI);
	int rc = csv_parse(&p, buf, len, on_field, on_row, t) == len ? 0 : -1;
	if (csv_fini(&p, on_field, on_row, t) != 0)
		rc = -1;
	csv_free(&p);
	free(buf);
	return rc || t->overflow ? -1 : 0;
}

/* Column index of name in the header row, or -1. */
static int col(const table *t, const char *name)
{
	for (int c = 0; c < t->ncols[0]; c++)
		if (strcmp(t->cell[0][c], name) == 0)
			return c;
	return -1;
}

/* Checks row r from column `from` on against a comma-separated list of
 * expected cells ("_" is an empty cell, "*" any cell). */
static void check_row(const table *t, int r, int from, const char *expected,
		      const char *what)
{
	char *copy = strdup(expected), *save = NULL;
	int c = from;
	for (char *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save), c++) {
		/* "_" stands for an empty cell (strtok skips empty tokens) */
		const char *want = strcmp(tok, "_") == 0 ? "" : tok;
		const char *have = c < t->ncols[r] ? t->cell[r][c] : "(none)";
		if (strcmp(want, "*") != 0 && strcmp(want, have) != 0) {
			fprintf(
			    stderr,
			    "\n%s row %d col %d (%s): want '%s' have '%s'\n",
			    what, r, c, c < t->ncols[0] ? t->cell[0][c] : "?",
			    want, have);
			CU_FAIL("cell differs");
		}
	}
	CU_ASSERT_EQUAL(c, t->ncols[r]);
	free(copy);
}

/* ---- fixtures ------------------------------------------------------------
 */

static char *dir;
static nb_result rows[N_SPECS];

static int suite_init(void)
{
	dir = tu_mkdtemp();
	return dir ? 0 : 1;
}

static int suite_clean(void)
{
	tu_rmtree(dir);
	free(dir);
	dir = NULL;
	return 0;
}

/* Writes the reports of seeds <= max_seed into a fresh subfolder. */
static const char *write_run(const char *sub, int max_seed, int n_seeds,
			     char **md_out)
{
	static char out[4096];
	snprintf(out, sizeof out, "%s/%s", dir, sub);
	tu_rmtree(out);
	CU_ASSERT_EQUAL(mkdir(out, 0755), 0);
	int n = make_rows(rows, max_seed);
	nb_report_info info = make_info(n_seeds);
	char err[NB_ERR_LEN] = "";
	char *md = NULL;
	size_t mdlen = 0;
	FILE *mf = open_memstream(&md, &mdlen);
	int rc = nb_report_write(out, &info, rows, n, mf, err);
	fclose(mf);
	if (rc != 0)
		fprintf(stderr, "\nnb_report_write: %s\n", err);
	CU_ASSERT_EQUAL(rc, 0);
	if (md_out)
		*md_out = md;
	else
		free(md);
	return out;
}

/* ---- results.csv ---------------------------------------------------------
 */

static const char results_header[] =
    "suite,tier,dataset,seed,role,arch,strategy,teacher_arch,"
    "teacher_strategy,attack,epochs,best_acc,last_acc,status,wall_s,key,"
    "final_kl";

static void results_csv(void)
{
	const char *out = write_run("results", 2, 2, NULL);
	table t;
	CU_ASSERT_EQUAL_FATAL(read_csv(out, "results.csv", &t), 0);
	check_row(&t, 0, 0, results_header, "results header");
	CU_ASSERT_EQUAL(t.rows, 1 + N_SPECS);
	/* the suite name's comma survives quoting */
	CU_ASSERT_STRING_EQUAL(t.cell[1][0], "paper, table 1");
	/* nasty teacher, seed 1 (specs[2]): KL printed with 4 decimals */
	check_row(&t, 3, 1,
		  "quick,cifar10,1,teacher,resnet18,nasty,_,_,_,3,94.50,94.40,"
		  "ok,102.2,*,10.5000",
		  "results");
	char key[80];
	snprintf(key, sizeof key, "%064d", 2);
	CU_ASSERT_STRING_EQUAL(t.cell[3][col(&t, "key")], key);
	/* normal teacher: final_kl NAN -> empty */
	CU_ASSERT_STRING_EQUAL(t.cell[1][col(&t, "final_kl")], "");
	/* diverged student (specs[18]): last_acc NAN -> empty */
	int r = 1 + 18;
	CU_ASSERT_STRING_EQUAL(t.cell[r][col(&t, "status")], "diverged");
	CU_ASSERT_STRING_EQUAL(t.cell[r][col(&t, "best_acc")], "10.00");
	CU_ASSERT_STRING_EQUAL(t.cell[r][col(&t, "last_acc")], "");
	CU_ASSERT_STRING_EQUAL(t.cell[r][col(&t, "attack")], "kd20");
	CU_ASSERT_STRING_EQUAL(t.cell[r][col(&t, "teacher_strategy")], "nasty");
	/* the suite column is quoted in the file itself */
	char path[4096];
	snprintf(path, sizeof path, "%s/results.csv", out);
	char *raw = slurp(path, NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(raw, "\"paper, table 1\",quick"));
	free(raw);
	table_free(&t);
}

/* ---- gaps.csv ------------------------------------------------------------
 */

static const char gaps_header_std[] =
    "dataset,teacher_arch,defense,student_arch,attack,seeds,"
    "teacher_normal_acc,teacher_normal_acc_std,teacher_defended_acc,"
    "teacher_defended_acc_std,teacher_gap,student_baseline_acc,"
    "student_baseline_acc_std,student_from_normal_acc,"
    "student_from_normal_acc_std,student_from_defended_acc,"
    "student_from_defended_acc_std,gap_vs_normal,gap_vs_baseline";

static const char gaps_header_1[] =
    "dataset,teacher_arch,defense,student_arch,attack,seeds,"
    "teacher_normal_acc,teacher_defended_acc,teacher_gap,"
    "student_baseline_acc,student_from_normal_acc,"
    "student_from_defended_acc,gap_vs_normal,gap_vs_baseline";

/* Two seeds; "_" is an empty cell. */
static const char *const gaps_rows_2[] = {
    /* cnn kd: 82.45 - 87.80 = -5.35; 82.45 - 86.70 = -4.25 */
    "cifar10,resnet18,nasty,cnn,kd,2,95.10,0.14,94.60,0.14,-0.50,"
    "86.70,0.14,87.80,0.14,82.45,0.07,-5.35,-4.25",
    /* cnn kd20: both defended students diverged: no mean, no gaps */
    "cifar10,resnet18,nasty,cnn,kd20,2,95.10,0.14,94.60,0.14,-0.50,"
    "86.70,0.14,87.10,0.14,_,_,_,_",
    /* preresnet20 kd: 87.98 - 92.50 = -4.52; 87.98 - 92.25 = -4.27 */
    "cifar10,resnet18,nasty,preresnet20,kd,2,95.10,0.14,94.60,0.14,-0.50,"
    "92.25,0.35,92.50,0.14,87.98,0.03,-4.52,-4.27",
    /* preresnet20 kd20: one value each side (missing / diverged seed):
     * no std; 80.00 - 92.10 = -12.10; 80.00 - 92.25 = -12.25 */
    "cifar10,resnet18,nasty,preresnet20,kd20,2,95.10,0.14,94.60,0.14,"
    "-0.50,92.25,0.35,92.10,_,80.00,_,-12.10,-12.25",
};

/* Seed 1 only. */
static const char *const gaps_rows_1[] = {
    /* 82.40 - 87.70 = -5.30; 82.40 - 86.60 = -4.20 */
    "cifar10,resnet18,nasty,cnn,kd,1,95.00,94.50,-0.50,86.60,87.70,82.40,"
    "-5.30,-4.20",
    "cifar10,resnet18,nasty,cnn,kd20,1,95.00,94.50,-0.50,86.60,87.00,_,_,_",
    /* 88.00 - 92.40 = -4.40; 88.00 - 92.00 = -4.00 */
    "cifar10,resnet18,nasty,preresnet20,kd,1,95.00,94.50,-0.50,92.00,92.40,"
    "88.00,-4.40,-4.00",
    /* 80.00 - 92.10 = -12.10; 80.00 - 92.00 = -12.00 */
    "cifar10,resnet18,nasty,preresnet20,kd20,1,95.00,94.50,-0.50,92.00,"
    "92.10,80.00,-12.10,-12.00",
};

static const struct gaps_case {
	const char *name;
	int max_seed, n_seeds;
	const char *header;
	const char *const *rows;
} gaps_cases[] = {
    {"gaps2", 2, 2, gaps_header_std, gaps_rows_2},
    {"gaps1", 1, 1, gaps_header_1, gaps_rows_1},
};

static void gaps_csv(void)
{
	for (size_t k = 0; k < sizeof gaps_cases / sizeof gaps_cases[0]; k++) {
		const struct gaps_case *g = &gaps_cases[k];
		const char *out =
		    write_run(g->name, g->max_seed, g->n_seeds, NULL);
		table t;
		CU_ASSERT_EQUAL_FATAL(read_csv(out, "gaps.csv", &t), 0);
		check_row(&t, 0, 0, g->header, g->name);
		CU_ASSERT_EQUAL(t.rows, 1 + 4);
		for (int r = 0; r < 4 && r + 1 < t.rows; r++)
			check_row(&t, r + 1, 0, g->rows[r], g->name);
		table_free(&t);
	}
}

/* The std values above were rounded: check one against its formula. */
static void gaps_std_formula(void)
{
	const char *out = write_run("stdformula", 2, 2, NULL);
	table t;
	CU_ASSERT_EQUAL_FATAL(read_csv(out, "gaps.csv", &t), 0);
	/* preresnet20 baseline 92.00, 92.50: sample std = 0.5 / sqrt(2) */
	char want[32];
	snprintf(want, sizeof want, "%.2f", 0.5 / sqrt(2.0));
	CU_ASSERT_STRING_EQUAL(t.cell[3][col(&t, "student_baseline_acc_std")],
			       want);
	table_free(&t);
}

/* ---- report.md -----------------------------------------------------------
 */

static const char *const md_expected_2[] = {
    "# nasty-bench report: paper, table 1 on cifar10, tier quick",
    "Seeds: 2 · threads: 4 · jobs: 2 · nasty-bench 0.1-test · wall time "
    "3723.0 s (1h 02m 03s) · command: `nasty-bench run suites/paper.ini "
    "--tier quick`",
    "## Attack: kd\n\n| Row | Teacher | cnn | preresnet20 |\n|---|---|---|---|"
    "\n| student baseline (scratch) | — | 86.70 ± 0.14 | 92.25 ± 0.35 |\n"
    "| T resnet18 normal | 95.10 ± 0.14 | 87.80 ± 0.14 (+1.10) | "
    "92.50 ± 0.14 (+0.25) |\n"
    "| T resnet18 nasty | 94.60 ± 0.14 (-0.50) | 82.45 ± 0.07 (-4.25) | "
    "87.98 ± 0.03 (-4.27) |\n",
    "## Attack: kd20\n\n",
    "| T resnet18 normal | 95.10 ± 0.14 | 87.10 ± 0.14 (+0.40) | "
    "92.10 (-0.15) |\n"
    "| T resnet18 nasty | 94.60 ± 0.14 (-0.50) | diverged | "
    "80.00 (-12.25) [1 of 2 diverged] |\n",
    "| resnet18 | normal | — | 95.10 ± 0.14 |",
    "| resnet18 | nasty | 10.6000 ± 0.1414 | 94.60 ± 0.14 |",
    "- teacher resnet18 nasty, seed 1, ok: [logs/",
    "- student preresnet20 from resnet18 nasty via kd20, seed 2, diverged: "
    "[logs/",
    "- student cnn scratch, seed 1, ok: [logs/",
};

static const char *const md_expected_1[] = {
    "Seeds: 1 ·",
    "| T resnet18 nasty | 94.50 (-0.50) | 82.40 (-4.20) | 88.00 (-4.00) |",
    "| T resnet18 nasty | 94.50 (-0.50) | diverged | 80.00 (-12.00) |",
    "| resnet18 | nasty | 10.5000 | 94.50 |",
};

static const struct md_case {
	const char *name;
	int max_seed, n_seeds;
	const char *const *expect;
	int n_expect;
} md_cases[] = {
    {"md2", 2, 2, md_expected_2,
     sizeof md_expected_2 / sizeof md_expected_2[0]},
    {"md1", 1, 1, md_expected_1,
     sizeof md_expected_1 / sizeof md_expected_1[0]},
};

static void report_md(void)
{
	for (size_t k = 0; k < sizeof md_cases / sizeof md_cases[0]; k++) {
		const struct md_case *m = &md_cases[k];
		char *echo = NULL;
		const char *out =
		    write_run(m->name, m->max_seed, m->n_seeds, &echo);
		char path[4096];
		snprintf(path, sizeof path, "%s/report.md", out);
		char *md = slurp(path, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(md);
		for (int i = 0; i < m->n_expect; i++)
			if (!strstr(md, m->expect[i])) {
				fprintf(stderr, "\n%s: missing:\n%s\n", m->name,
					m->expect[i]);
				CU_FAIL("report.md lacks an expected line");
			}
		/* a log link, relative to the report's folder */
		char link[256];
		snprintf(link, sizeof link,
			 "[logs/%064d.csv](logs/%064d.csv)", 2, 2);
		CU_ASSERT_PTR_NOT_NULL(strstr(md, link));
		/* the echo is the file up to the list of logs */
		const char *logs = strstr(md, "## Per-epoch logs");
		CU_ASSERT_PTR_NOT_NULL_FATAL(logs);
		CU_ASSERT_EQUAL(strlen(echo), (size_t)(logs - md));
		CU_ASSERT_EQUAL(strncmp(echo, md, (size_t)(logs - md)), 0);
		if (getenv("NB_SHOW_REPORT") && k == 0)
			fputs(md, stderr);
		free(md);
		free(echo);
	}
}

/* ---- robustness ----------------------------------------------------------
 */

/* Only the reports are left in the folder (no temporary files), also
 * after overwriting a previous report. */
static void atomic_no_temp(void)
{
	const char *out = write_run("atomic", 2, 2, NULL);
	int n = make_rows(rows, 2);
	nb_report_info info = make_info(2);
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL(nb_report_write(out, &info, rows, n, NULL, err), 0);
	DIR *d = opendir(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	int files = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		files++;
		CU_ASSERT(strcmp(e->d_name, "results.csv") == 0 ||
			  strcmp(e->d_name, "gaps.csv") == 0 ||
			  strcmp(e->d_name, "report.md") == 0);
	}
	closedir(d);
	CU_ASSERT_EQUAL(files, 3);
}

static void missing_folder(void)
{
	char out[4096];
	snprintf(out, sizeof out, "%s/no/such/folder", dir);
	int n = make_rows(rows, 2);
	nb_report_info info = make_info(2);
	char err[NB_ERR_LEN] = "";
	CU_ASSERT_EQUAL(nb_report_write(out, &info, rows, n, NULL, err),
			NB_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, out));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "does not exist"));
	/* a file where the folder should be */
	snprintf(out, sizeof out, "%s/plainfile", dir);
	FILE *f = fopen(out, "w");
	fclose(f);
	CU_ASSERT_EQUAL(nb_report_write(out, &info, rows, n, NULL, err),
			NB_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a folder"));
	CU_ASSERT_EQUAL(nb_report_write(NULL, &info, rows, n, NULL, err),
			NB_EINVAL);
}

/* No rows at all: every cell is empty or "—", the shape is unchanged. */
static void no_rows(void)
{
	char out[2048];
	snprintf(out, sizeof out, "%s/empty", dir);
	CU_ASSERT_EQUAL(mkdir(out, 0755), 0);
	nb_report_info info = make_info(2);
	char err[NB_ERR_LEN] = "";
	CU_ASSERT_EQUAL(nb_report_write(out, &info, NULL, 0, NULL, err), 0);
	table t;
	CU_ASSERT_EQUAL_FATAL(read_csv(out, "results.csv", &t), 0);
	CU_ASSERT_EQUAL(t.rows, 1);
	table_free(&t);
	CU_ASSERT_EQUAL_FATAL(read_csv(out, "gaps.csv", &t), 0);
	CU_ASSERT_EQUAL(t.rows, 5);
	check_row(&t, 1, 0,
		  "cifar10,resnet18,nasty,cnn,kd,2,_,_,_,_,_,_,_,_,_,_,_,_,_",
		  "empty gaps");
	table_free(&t);
	char path[4096];
	snprintf(path, sizeof path, "%s/report.md", out);
	char *md = slurp(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(md);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(md, "| student baseline (scratch) | — | — | — |"));
	CU_ASSERT_PTR_NOT_NULL(strstr(md, "| T resnet18 nasty | — | — | — |"));
	CU_ASSERT_PTR_NOT_NULL(strstr(md, "(no models)"));
	/* without access words, no access lines */
	CU_ASSERT_PTR_NULL(strstr(md, "Access:"));
	free(md);
}

/* Each attack's access level: a line per attack under the header and one
 * under its table's heading. */
static void access_levels(void)
{
	char out[2048];
	snprintf(out, sizeof out, "%s/access", dir);
	CU_ASSERT_EQUAL(mkdir(out, 0755), 0);
	nb_report_info info = make_info(1);
	char words[2][160];
	const char *access[2] = {words[0], words[1]};
	for (int i = 0; i < 2; i++)
		nb_access_describe(
		    strcmp(info.attacks[i], "kd")
			? NB_ACCESS_OUTPUTS | NB_ACCESS_GRADIENTS |
			      NB_ACCESS_FEATURES
			: NB_ACCESS_OUTPUTS | NB_ACCESS_TRAIN_DATA,
		    words[i], sizeof words[i]);
	info.attack_access = access;
	char err[NB_ERR_LEN] = "";
	CU_ASSERT_EQUAL(nb_report_write(out, &info, NULL, 0, NULL, err), 0);
	char path[4096];
	snprintf(path, sizeof path, "%s/report.md", out);
	char *md = slurp(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(md);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(md, "\n- kd: released outputs, training data\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(md, "## Attack: kd\n\nAccess: released outputs, training "
		       "data.\n"));
	for (int i = 0; i < 2; i++)
		if (strcmp(info.attacks[i], "kd")) {
			char line[256];
			snprintf(line, sizeof line,
				 "\n- %s: white box (gradients, features), "
				 "data-free\n",
				 info.attacks[i]);
			CU_ASSERT_PTR_NOT_NULL(strstr(md, line));
		}
	free(md);
}

/* A student whose artefact had a synthesised-image grid (the runner copies
 * it to DIR/images/KEY.png) gets it shown in report.md; the others and
 * the teachers do not, and without any image there is no section. */
static void synthesised_images(void)
{
	char *md;
	write_run("noimages", 2, 2, &md);
	CU_ASSERT_PTR_NULL(strstr(md, "Synthesised images"));
	free(md);
	const char *out = write_run("images", 2, 2, NULL);
	int n = make_rows(rows, 2), student = -1, teacher = -1;
	for (int i = 0; i < n; i++) {
		if (student < 0 && !strcmp(rows[i].role, "student") &&
		    strcmp(rows[i].attack, "scratch"))
			student = i;
		if (teacher < 0 && !strcmp(rows[i].role, "teacher"))
			teacher = i;
	}
	CU_ASSERT_FATAL(student >= 0 && teacher >= 0);
	char path[4096];
	snprintf(path, sizeof path, "%s/images", out);
	CU_ASSERT_EQUAL(mkdir(path, 0755), 0);
	int pick[2] = {student, teacher};
	for (int k = 0; k < 2; k++) {
		snprintf(path, sizeof path, "%s/images/%s.png", out,
			 rows[pick[k]].key);
		FILE *f = fopen(path, "w");
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		fclose(f);
	}
	nb_report_info info = make_info(2);
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL_FATAL(nb_report_write(out, &info, rows, n, NULL, err),
			      0);
	snprintf(path, sizeof path, "%s/report.md", out);
	md = slurp(path, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(md);
	char want[1024];
	snprintf(want, sizeof want, "- %s from %s %s, student %s, seed %llu: ",
		 rows[student].attack, rows[student].teacher_arch,
		 rows[student].teacher_strategy, rows[student].arch,
		 (unsigned long long)rows[student].seed);
	CU_ASSERT_PTR_NOT_NULL(strstr(md, "## Synthesised images"));
	CU_ASSERT_PTR_NOT_NULL(strstr(md, want));
	snprintf(want, sizeof want, "(images/%s.png)", rows[student].key);
	CU_ASSERT_PTR_NOT_NULL(strstr(md, want));
	snprintf(want, sizeof want, "(images/%s.png)", rows[teacher].key);
	CU_ASSERT_PTR_NULL(strstr(md, want));
	/* the section comes before the logs */
	CU_ASSERT_TRUE(strstr(md, "## Synthesised images") <
		       strstr(md, "## Per-epoch logs"));
	free(md);
}

static const nb_test_entry tests[] = {
    {"report.md states each attack's access", access_levels},
    {"results.csv: contract header, rows, numbers, quoting", results_csv},
    {"gaps.csv: means, std, gaps, empty cells, 1 and 2 seeds", gaps_csv},
    {"gaps.csv: std is the sample std (n-1)", gaps_std_formula},
    {"report.md: paper tables, deltas, nastiness, logs, echo", report_md},
    {"reports are written atomically, no temporary files", atomic_no_temp},
    {"missing output folder: a clear error", missing_folder},
    {"no rows: empty cells, same shape", no_rows},
    {"report.md: synthesised image grids", synthesised_images},
    {NULL, NULL}};

void nb_test_report(void)
{
	CU_pSuite s = CU_add_suite("report", suite_init, suite_clean);
	if (!s)
		return;
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}
