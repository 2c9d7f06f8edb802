/*
 * What a running conversion shows: progress for terminals and for Slurm
 * logs, SIGINT/SIGTERM turned into a clean cancel, and the summary line.
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
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

/* A bar redrawn in place, at most 8 times a second; true when it printed. */
static bool draw_bar(const cli_progress *ps, double t, bool done, double pct, double rate, double eta)
{
	if (t - ps->last_print < 0.125 && !done)
		return false;
	int width = 30, fill = (int)(pct / 100.0 * width);
	fprintf(stderr, "\r%s [%.*s%*s] %5.1f%% %.2f GB/s ETA %3.0fs ", ps->label, fill,
		"##############################", width - fill, "", pct, rate, eta);
	if (done)
		fputc('\n', stderr);
	return true;
}

/* Slurm logs: plain lines starting with the checkpoint, at most one every 10 s. */
static bool log_line(const cli_progress *ps, const weld_progress *p, double t, double pct, double rate, double eta)
{
	if (t - ps->last_print < 10.0)
		return false;
	time_t now = time(NULL);
	const struct tm *tm = localtime(&now);
	char stamp[32] = "?";
	if (tm)
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", tm);
	fprintf(stderr, "%s: %s %5.1f%% of %.2f GB written, %.2f GB/s, ETA %.0f s\n", ps->label, stamp, pct,
		(double)p->bytes_total / 1e9, rate, eta);
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
	double pct = p->bytes_total ? 100.0 * (double)p->bytes_done / (double)p->bytes_total : 100.0;
	double rate = p->seconds > 0 ? (double)p->bytes_done / p->seconds / 1e9 : 0;
	double eta = rate > 0 ? ((double)(p->bytes_total - p->bytes_done) / 1e9) / rate : 0;
	bool printed = ps->tty ? draw_bar(ps, t, done, pct, rate, eta) : log_line(ps, p, t, pct, rate, eta);
	if (printed) {
		fflush(stderr);
		ps->last_print = t;
	}
	return 0;
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

void cli_print_summary(const char *label, const weld_convert_result *r, double secs)
{
	char rd[32], wr[32], tied[64] = "";
	if (r->tied)
		snprintf(tied, sizeof(tied), " (+%zu tied alias%s written once)", r->tied, r->tied == 1 ? "" : "es");
	printf("%s: %zu tensors%s -> %s: read %s, wrote %s in %.2f s (%.2f GB/s), peak memory %.0f MB, %d thread%s%s%s%s\n",
	       label, r->tensors, tied, r->output_file, cli_human(rd, sizeof(rd), r->bytes_read),
	       cli_human(wr, sizeof(wr), r->bytes_written), secs,
	       secs > 0 ? (double)r->bytes_written / 1e9 / secs : 0.0, cli_peak_rss_mb(), r->threads,
	       r->threads == 1 ? "" : "s", r->stripped_prefix[0] ? ", stripped prefix '" : "", r->stripped_prefix,
	       r->stripped_prefix[0] ? "'" : "");
	if (r->fp16_overflows)
		printf("%s: %llu finite values overflowed to inf in the float16 cast\n", label,
		       (unsigned long long)r->fp16_overflows);
}
