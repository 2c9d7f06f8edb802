/*
 * What a running conversion shows: progress for terminals and for Slurm
 * logs, SIGINT/SIGTERM turned into a clean cancel, and the summary line.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

void cli_install_signals(void)
{
	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int cli_signal(void)
{
	return got_signal;
}

int cli_signal_exit(void)
{
	fprintf(stderr, "weld: interrupted by %s; the output folder is as it was\n",
		got_signal == SIGTERM ? "SIGTERM" : "SIGINT");
	return got_signal == SIGTERM ? EXIT_SIGTERM : EXIT_SIGINT;
}

double cli_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

cli_progress cli_progress_start(const char *label, bool quiet)
{
	return (cli_progress){.tty = isatty(STDERR_FILENO), .quiet = quiet, .label = label, .last_print = cli_wall()};
}

/* How far a phase has got, as the bar and the log lines show it. */
typedef struct shown {
	bool cross_check; /* reading the HF copy (WELD_PHASE_CROSS_CHECK), not converting */
	double pct, eta, total_gb;
	char rates[64];
} shown;

/* A bar redrawn in place, at most 8 times a second; true when it printed. */
static bool draw_bar(const cli_progress *ps, double t, bool done, const shown *w)
{
	if (t - ps->last_print < 0.125 && !done)
		return false;
	int width = 30, fill = (int)(w->pct / 100.0 * width);
	fprintf(stderr, "\r%s%s [%.*s%*s] %5.1f%% %s ETA %3.0fs ", ps->label, w->cross_check ? " cross-check" : "", fill,
		"##############################", width - fill, "", w->pct, w->rates, w->eta);
	if (done)
		fputc('\n', stderr);
	return true;
}

/* Slurm logs: plain lines starting with the checkpoint, at most one every 10 s. */
static bool log_line(const cli_progress *ps, double t, const shown *w)
{
	if (t - ps->last_print < 10.0)
		return false;
	time_t now = time(NULL);
	const struct tm *tm = localtime(&now);
	char stamp[32] = "?";
	if (tm)
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", tm);
	fprintf(stderr, "%s: %s %s%5.1f%% of %.2f GB %s, %s, ETA %.0f s\n", ps->label, stamp,
		w->cross_check ? "cross-check: " : "", w->pct, w->total_gb,
		w->cross_check ? "of the HF copy read" : "written", w->rates, w->eta);
	return true;
}

int cli_on_progress(const weld_progress *p, void *payload)
{
	cli_progress *ps = payload;
	if (got_signal)
		return 1;
	if (ps->quiet)
		return 0;
	double t = cli_wall();
	bool done = p->bytes_done >= p->bytes_total;
	shown w = {.cross_check = p->phase == WELD_PHASE_CROSS_CHECK, .total_gb = (double)p->bytes_total / 1e9};
	w.pct = p->bytes_total ? 100.0 * (double)p->bytes_done / (double)p->bytes_total : 100.0;
	/* Read and write rates apart: fp32 -> bf16 reads twice what it writes, and disks are quoted by reads. */
	double rd = p->seconds > 0 ? (double)p->bytes_read / p->seconds / 1e9 : 0;
	double wr = p->seconds > 0 ? (double)p->bytes_done / p->seconds / 1e9 : 0;
	if (w.cross_check)
		snprintf(w.rates, sizeof(w.rates), "read %.2f GB/s", rd);
	else
		snprintf(w.rates, sizeof(w.rates), "read %.2f GB/s, write %.2f GB/s", rd, wr);
	w.eta = wr > 0 ? ((double)(p->bytes_total - p->bytes_done) / 1e9) / wr : 0;
	bool printed = ps->tty ? draw_bar(ps, t, done, &w) : log_line(ps, t, &w);
	if (printed) {
		fflush(stderr);
		ps->last_print = t;
	}
	return 0;
}

void cli_on_start(const weld_convert_result *r, void *payload)
{
	cli_progress *ps = payload;
	if (ps->quiet)
		return;
	char rd[32], wr[32];
	fprintf(stderr, "%s: converting %s (%s%s%s) -> %s: %zu tensors, %s to read, %s to write as %s, %s, %d thread%s\n",
		ps->label, ps->input, r->format, r->format_detail[0] ? ": " : "", r->format_detail, r->output_file,
		r->tensors, cli_human(rd, sizeof(rd), r->bytes_to_read), cli_human(wr, sizeof(wr), r->bytes_written),
		ps->dtype, r->backend, r->threads, r->threads == 1 ? "" : "s");
	if (r->source_choice[0])
		fprintf(stderr, "%s: note: %s\n", ps->label, r->source_choice);
	if (r->notice[0])
		fprintf(stderr, "%s: note: %s\n", ps->label, r->notice);
	ps->notice_shown = strlen(r->notice);
	ps->last_print = cli_wall();
	fflush(stderr);
}

const char *cli_human(char *buf, size_t cap, uint64_t n)
{
	/* Decimal units, as disk sizes are quoted. */
	if (n >= 1000000000ull)
		snprintf(buf, cap, "%.2f GB", (double)n / 1e9);
	else if (n >= 1000000ull)
		snprintf(buf, cap, "%.1f MB", (double)n / 1e6);
	else
		snprintf(buf, cap, "%.1f kB", (double)n / 1e3);
	return buf;
}

double cli_peak_rss_mb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

/* The cross-check's line: a warning when the copy differs. */
static void print_cross_check(const char *label, const weld_cross_check *x)
{
	if (x->result == WELD_CROSS_CHECK_DIFFER)
		fprintf(stderr, "%s: warning: %s\n", label, x->summary);
	else if (x->result != WELD_CROSS_CHECK_NONE)
		fprintf(stderr, "%s: cross-check: %s\n", label, x->summary);
}

void cli_print_summary(const char *label, const weld_convert_result *r, double secs, const cli_progress *ps)
{
	char rd[32], wr[32], tied[64] = "", prefix[64] = "";
	if (r->tied)
		snprintf(tied, sizeof(tied), " (+%zu tied alias%s written once)", r->tied, r->tied == 1 ? "" : "es");
	if (r->stripped_prefix[0])
		snprintf(prefix, sizeof(prefix), ", stripped prefix '%s'", r->stripped_prefix);
	double gbs = secs > 0 ? 1e9 * secs : 0;
	fprintf(stderr,
		"%s: done in %.2f s: %zu tensors%s -> %s, read %s (%.2f GB/s), wrote %s (%.2f GB/s), peak memory %.0f MB, "
		"%s, %d thread%s%s\n",
		label, secs, r->tensors, tied, r->output_file, cli_human(rd, sizeof(rd), r->bytes_read),
		gbs > 0 ? (double)r->bytes_read / gbs : 0.0, cli_human(wr, sizeof(wr), r->bytes_written),
		gbs > 0 ? (double)r->bytes_written / gbs : 0.0, cli_peak_rss_mb(), r->backend, r->threads,
		r->threads == 1 ? "" : "s", prefix);
	if (r->fp16_overflows)
		fprintf(stderr, "%s: %llu finite values overflowed to inf in the float16 cast\n", label,
			(unsigned long long)r->fp16_overflows);
	print_cross_check(label, &r->cross_check);
	/* Notices that came after the first line (e.g. how the output was published). */
	const char *rest = r->notice + (ps && ps->notice_shown <= strlen(r->notice) ? ps->notice_shown : 0);
	rest += strspn(rest, "; ");
	if (*rest)
		fprintf(stderr, "%s: note: %s\n", label, rest);
}

weld_status cli_convert_logged(const ckpt_entry *c, const char *out, const weld_convert_options *o, bool quiet,
			       weld_convert_result *r, weld_error *err)
{
	cli_progress ps = cli_progress_start(c->base, quiet);
	weld_convert_options co = *o;
	ps.input = c->dir;
	ps.dtype = cli_dtype_word(co.dtype);
	co.progress = cli_on_progress;
	co.start = cli_on_start;
	co.payload = &ps;
	double t0 = cli_wall();
	weld_status s = weld_convert(c->dir, out, &co, r, err);
	/* The summary repeats no notice the start line showed; with --quiet the caller's table alone tells. */
	if (s == WELD_OK && !quiet && !co.dry_run)
		cli_print_summary(c->base, r, cli_wall() - t0, &ps);
	return s;
}
