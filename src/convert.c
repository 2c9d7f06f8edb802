/*
 * The steps of weld_convert (convert_run.c), strung together there:
 * checkpoint (formats) -> plan -> writer layout -> executor through a
 * backend -> weights, side files and manifest in a staging folder -> the
 * folder published whole. The output folder's lock is held from before the
 * checkpoint is read until the publish; any failure or a cancel removes the
 * staging folder, leaving the target exactly as it was (output/publish.h).
 */
#define _DEFAULT_SOURCE /* realpath */
#include "convert_steps.h"
#include "output/atomic.h"
#include "output/job.h"
#include "output/manifest.h"
#include "output/publish.h"
#include "output/shards.h"
#include "output/side_files.h"
#include "output/writer.h"
#include "pipeline/crosscheck.h"
#include "pipeline/summary.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CHUNK_BYTES (8u << 20)

void weld_convert_options_init(weld_convert_options *o)
{
	*o = (weld_convert_options)WELD_CONVERT_OPTIONS_INIT;
}

const char *weld__dtype_label(weld_out_dtype d)
{
	switch (d) {
	case WELD_OUT_BF16: return "bfloat16";
	case WELD_OUT_F16: return "float16";
	case WELD_OUT_F32: return "float32";
	case WELD_OUT_KEEP: break;
	}
	return "keep";
}

/* The folder holding config.json and tokenizer files: the input, or the file's folder. */
static char *side_dir_of(const char *input)
{
	if (weld__is_dir(input))
		return weld__strdup(input);
	const char *slash = strrchr(input, '/');
	if (!slash)
		return weld__strdup(".");
	return weld__strndup(input, slash == input ? 1 : (size_t)(slash - input));
}

/* config.json's tie_word_embeddings (false when there is no readable config). */
static bool config_ties_embeddings(const char *side_dir)
{
	char *path = weld__path_join(side_dir, "config.json");
	cJSON *c = NULL;
	bool tie = path && weld__is_file(path) && weld__read_json_file(path, WELD_SIDE_FILE_MAX, &c, NULL) == WELD_OK &&
		   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings"));
	cJSON_Delete(c);
	free(path);
	return tie;
}

/* The dtype config.json should name: the output dtype, or with --dtype keep the floats' common one. */
static const char *config_dtype(const weld_plan *p, weld_out_dtype want)
{
	if (want != WELD_OUT_KEEP)
		return weld__dtype_label(want);
	weld_dtype seen = WELD_DTYPE_INVALID;
	for (size_t i = 0; i < p->nt; i++) {
		weld_dtype d = p->t[i].dtype;
		if (!weld__dtype_is_float(d))
			continue;
		if (seen && seen != d)
			return NULL;
		seen = d;
	}
	switch (seen) {
	case WELD_DTYPE_BF16: return "bfloat16";
	case WELD_DTYPE_F16: return "float16";
	case WELD_DTYPE_F32: return "float32";
	default: return NULL;
	}
}

static int default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/*
 * The output folder is replaced whole, so it must not hold the input: not be
 * the input's folder (INPUT_DIR) nor any folder above it.
 */
static weld_status refuse_input_inside(const char *input_dir, const char *output_dir, weld_error *err)
{
	char in[PATH_MAX], out[PATH_MAX];
	if (!realpath(input_dir, in) || !realpath(output_dir, out))
		return WELD_OK; /* no output folder yet: nothing to lose */
	size_t n = strlen(out);
	if (strcmp(in, out) == 0)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: the output folder is the input's folder; choose another --output", output_dir);
	if (strncmp(in, out, n) == 0 && (in[n] == '/' || n == 1))
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: the output folder holds the input (%s); choose another --output", output_dir, input_dir);
	return WELD_OK;
}

weld_status weld__conversion_begin(conversion *cv, const char *input, const char *output_dir,
				   const weld_convert_options *given, weld_convert_result *res, weld_error *err)
{
	memset(res, 0, sizeof(*res));
	*cv = (conversion){.input = input, .output_dir = output_dir, .res = res, .lock = WELD_LOCK_INIT};
	weld_convert_options *opts = &cv->opts;
	weld_convert_options_init(opts);
	if (!given)
		return WELD_OK;
	if (given->struct_size < offsetof(weld_convert_options, dtype) || given->struct_size > sizeof(*given))
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "weld_convert: options.struct_size is %zu; set it with weld_convert_options_init",
				  given->struct_size);
	memcpy(opts, given, given->struct_size);
	opts->struct_size = sizeof(*opts);
	return WELD_OK;
}

/* The backend for DEVICE; when CUDA is not used after all, the result's notice says why. */
static weld_status open_backend(conversion *cv, weld_error *err)
{
	char why[sizeof(cv->res->notice)], note[sizeof(why) + 64];
	weld_status s = weld_backend_open(&cv->b, cv->opts.device, why, sizeof(why), err);
	if (!s && why[0]) {
		snprintf(note, sizeof(note), "CUDA not used (%s); converting on the CPU", why);
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
	}
	return s;
}

/* A multi-part job's folder beside the target: its parts own the target until it is published (output/job.h). */
static weld_status refuse_job(conversion *cv, weld_error *err)
{
	char *dir = weld__job_dir(&cv->target);
	weld_status s = dir ? WELD_OK : weld__nomem(err);
	if (!s && weld__is_dir(dir) && cv->opts.force) {
		weld__job_remove(dir);
		weld__append_note(cv->res->notice, sizeof(cv->res->notice),
				  "discarded the parts of an unfinished multi-part conversion into this folder (--force)");
	} else if (!s && weld__is_dir(dir))
		s = weld__fail(err, WELD_ERR_INVALID_ARG,
			       "%s: a multi-part conversion into this folder is unfinished; weld convert --finish --output %s "
			       "publishes it once every part is recorded, or --force discards it",
			       dir, cv->output_dir);
	free(dir);
	return s;
}

/*
 * The output folder, ours alone: its lock taken and what an interrupted run
 * left there repaired (a set-aside output put back, staging removed).
 */
weld_status weld__claim_target(conversion *cv, weld_error *err)
{
	char note[sizeof(cv->res->notice)];
	weld_status s = weld__target_open(&cv->target, cv->output_dir, err);
	if (!s)
		s = weld__lock_take(&cv->lock, cv->target.parent, cv->target.name, cv->opts.force, note, sizeof(note), err);
	if (!s) {
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
		s = weld__target_repair(&cv->target, note, sizeof(note), err);
	}
	if (!s)
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
	if (!s)
		s = refuse_job(cv, err);
	return s;
}

static weld_status open_input(conversion *cv, weld_error *err)
{
	weld_open_options o = WELD_OPEN_OPTIONS_INIT;
	o.type = cv->opts.type;
	o.allow_globals = cv->opts.allow_globals;
	o.nallow_globals = cv->opts.nallow_globals;
	return weld_ckpt_open_with(&cv->c, cv->input_path ? cv->input_path : cv->input, &o, err);
}

weld_status weld_ckpt_check(const weld_ckpt *ckpt, weld_error *err)
{
	weld_writer *w = NULL;
	weld_plan *p = NULL;
	uint64_t size;
	/* Stored dtypes: an output dtype changes sizes only, never what is refused. */
	weld_plan_options po = {.dtype = WELD_OUT_KEEP};
	weld_status s = weld_writer_new(&w, &weld_writer_safetensors, err);
	if (!s)
		s = weld_plan_build(&p, ckpt, &po, err);
	if (!s)
		s = weld_writer_layout(w, p, &size, err);
	weld_plan_free(p);
	weld_writer_free(w);
	return s;
}

/* The writer the options ask for: its kind, and the shard limit parsed before anything is opened. */
static weld_status new_writer(conversion *cv, weld_error *err)
{
	const char *limit = cv->opts.max_shard_size;
	/* transformers 5 has no .bin writer (save_pretrained lost safe_serialization): no shards to match. */
	if (limit && cv->opts.pytorch_bin)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "--max-shard-size shards safetensors only: transformers 5.24 writes no sharded "
				  "pytorch_model.bin to match (save_pretrained has no safe_serialization=False)");
	weld_status s = weld_writer_new(&cv->w, cv->opts.pytorch_bin ? &weld_writer_torch_bin : &weld_writer_safetensors,
					err);
	if (!s && limit) {
		cv->w->sharded = true;
		s = weld_shard_size_parse(limit, &cv->w->shard_limit, err);
	}
	return s;
}

/* Everything known before any data moves: the plan, its layout, the backend, a staging folder. */
weld_status weld__prepare(conversion *cv, weld_error *err)
{
	cv->w = NULL;
	weld_status s = new_writer(cv, err);
	/* The longest name the result may give: the weights file, or the index of shards. */
	const char *weights = !cv->w ? "" : cv->opts.max_shard_size ? WELD_ST_INDEX_NAME : cv->w->iface->file_name;
	if (!s && strlen(cv->output_dir) + strlen(weights) + 2 > sizeof(cv->res->output_file))
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: path too long", cv->output_dir);
	if (!s && cv->opts.side_files && !weld__is_dir(cv->opts.side_files))
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: --side-files is not a folder", cv->opts.side_files);
	const char *in = cv->input_path ? cv->input_path : cv->input;
	if (!s && !(cv->side_dir = cv->opts.side_files ? weld__strdup(cv->opts.side_files) : side_dir_of(in)))
		s = weld__nomem(err);
	if (!s)
		s = refuse_input_inside(cv->side_dir, cv->output_dir, err);
	if (!s && !cv->opts.dry_run)
		s = cv->parts ? weld__target_open(&cv->target, cv->output_dir, err) : weld__claim_target(cv, err);
	if (!s)
		s = open_input(cv, err);
	if (!s) {
		weld_plan_options po = {.dtype = cv->opts.dtype, .tie_word_embeddings = config_ties_embeddings(cv->side_dir)};
		s = weld_plan_build(&cv->p, cv->c, &po, err);
	}
	/* The parts of a job check and stage under the lock, later (convert_parts.c). */
	if (!s && !cv->opts.dry_run && !cv->parts)
		s = weld__target_check(&cv->target, cv->opts.force || cv->opts.replace, err);
	if (!s && !cv->opts.dry_run && !cv->parts)
		s = weld__stage_create(&cv->target, &cv->stage, err);
	if (!s)
		s = open_backend(cv, err);
	if (!s)
		s = weld_writer_layout(cv->w, cv->p, &cv->file_size, err);
	return s;
}

/* What is known once prepared, for the start callback, the dry run and the result. */
void weld__fill_planned(conversion *cv)
{
	weld_convert_result *r = cv->res;
	r->tensors = cv->p->nt;
	r->tied = cv->p->nalias;
	r->bytes_written = cv->file_size;
	r->bytes_to_read = cv->p->src_bytes;
	r->threads = cv->opts.threads > 0 ? cv->opts.threads : default_threads();
	snprintf(r->format, sizeof(r->format), "%s", weld_format_name(weld_ckpt_format(cv->c)));
	snprintf(r->format_detail, sizeof(r->format_detail), "%s", cv->c->description ? cv->c->description : "");
	snprintf(r->source_choice, sizeof(r->source_choice), "%s", cv->c->choice_note ? cv->c->choice_note : "");
	snprintf(r->backend, sizeof(r->backend), "%s", weld_backend_name(cv->b));
	snprintf(r->stripped_prefix, sizeof(r->stripped_prefix), "%s", cv->p->stripped_prefix);
	snprintf(r->output_file, sizeof(r->output_file), "%s/%s", cv->output_dir,
		 cv->w->index ? WELD_ST_INDEX_NAME : cv->w->files[0].name);
	r->files = cv->w->nfiles;
	r->plan_bytes = weld__plan_memory(cv->p, cv->c);
}

/* Weights file K in the staging folder, created at its full size with its head written. */
static weld_status open_weights(conversion *cv, size_t k, weld_error *err)
{
	weld_writer *w = cv->w;
	weld_atomic *a = &cv->weights[k];
	weld_status s = weld__atomic_create(a, cv->stage, w->files[k].name, err);
	if (!s && ftruncate(a->fd, (off_t)w->files[k].size) != 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot size to %llu bytes: %s", a->tmp,
			       (unsigned long long)w->files[k].size, strerror(errno));
	if (!s)
		s = w->iface->write_head(w, k, a->fd, a->tmp, err);
	return s;
}

/*
 * The weights files (one, or the shards) in the staging folder: laid out,
 * filled by one run of the executor across them all, finished and flushed;
 * then the shards' index.
 */
weld_status weld__write_weights(conversion *cv, weld_error *err)
{
	weld_writer *w = cv->w;
	size_t n = w->nfiles;
	int *fds = weld__calloc(n, sizeof(*fds));
	const char **paths = weld__calloc(n, sizeof(*paths));
	cv->weights = weld__calloc(n, sizeof(*cv->weights));
	cv->file_crcs = weld__calloc(n, sizeof(*cv->file_crcs));
	weld_status s = fds && paths && cv->weights && cv->file_crcs ? WELD_OK : weld__nomem(err);
	for (size_t k = 0; cv->weights && k < n; k++)
		cv->weights[k] = (weld_atomic)WELD_ATOMIC_INIT;
	for (size_t k = 0; !s && k < n; k++) {
		s = open_weights(cv, k, err);
		fds[k] = cv->weights[k].fd;
		paths[k] = cv->weights[k].tmp;
	}
	if (!s) {
		weld_exec_options eo = {.threads = cv->res->threads,
					.chunk_bytes = cv->opts.chunk_bytes ? cv->opts.chunk_bytes : DEFAULT_CHUNK_BYTES,
					.progress = cv->opts.progress,
					.payload = cv->opts.payload};
		s = weld_execute(cv->p, cv->b, fds, paths, &eo, &cv->ex, err);
	}
	for (size_t k = 0; !s && k < n; k++)
		s = w->iface->finish(w, k, cv->p, fds[k], paths[k], cv->ex.tensor_crcs, &cv->file_crcs[k], err);
	for (size_t k = 0; !s && k < n; k++)
		s = weld__atomic_commit(&cv->weights[k], err);
	cv->file_crc = cv->file_crcs ? cv->file_crcs[0] : 0;
	if (!s && w->index) {
		s = weld__write_file_atomic(cv->stage, WELD_ST_INDEX_NAME, w->index, w->index_len, err);
		cv->file_crc = weld__crc32(0, w->index, w->index_len);
	}
	free(fds);
	free(paths);
	return s;
}

/*
 * The masters just written against the HF 16-bit copy beside them. A
 * difference fails the run only when asked to: the masters are what trained.
 */
static weld_status cross_check(conversion *cv, weld_error *err)
{
	weld_cross_check *x = &cv->res->cross_check;
	weld_cross_check_io io = {cv->c->hf_beside, cv->opts.progress, cv->opts.payload};
	weld_status s = weld__cross_check(cv->p, cv->ex.tensor_crcs, &io, x, err);
	if (!s && x->result == WELD_CROSS_CHECK_DIFFER && cv->opts.cross_check == WELD_CROSS_CHECK_ERROR)
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: %s; --cross-check warn converts anyway", cv->c->hf_beside,
			       x->summary);
	return s;
}

/* config.json (dtype set), tokenizer and other side files, then weld.json, all in the staging folder. */
weld_status weld__write_side_files(conversion *cv, weld_error *err)
{
	weld_status s = WELD_OK;
	if (cv->c->hf_beside && cv->opts.cross_check != WELD_CROSS_CHECK_OFF)
		s = cross_check(cv, err);
	if (!s)
		s = weld_copy_side_files(cv->side_dir, cv->stage, config_dtype(cv->p, cv->opts.dtype), &cv->side,
					     &cv->nside, err);
	if (s)
		return s;
	weld_manifest_info mi = {.source = cv->input,
				 .source_path = cv->input_path,
				 .source_format = weld_format_name(weld_ckpt_format(cv->c)),
				 .dtype = weld__dtype_label(cv->opts.dtype),
				 .files = cv->w->files,
				 .file_crcs = cv->file_crcs,
				 .nfiles = cv->w->nfiles,
				 .index_file = cv->w->index ? WELD_ST_INDEX_NAME : NULL,
				 .tensor_crcs = cv->ex.tensor_crcs,
				 .fp16_overflows = cv->ex.fp16_overflows,
				 .side_files = cv->side,
				 .nside = cv->nside,
				 .choice_note = cv->c->choice_note,
				 .cross_check = &cv->res->cross_check};
	return weld_manifest_write(cv->stage, cv->p, &mi, err);
}

/* The staging folder becomes the output folder, in one step. */
weld_status weld__publish(conversion *cv, weld_error *err)
{
	char note[sizeof(cv->res->notice)];
	weld_status s = weld__stage_publish(&cv->target, cv->stage, cv->opts.force || cv->opts.replace, note, sizeof(note),
					    err);
	if (!s) {
		weld__append_note(cv->res->notice, sizeof(cv->res->notice), note);
		free(cv->stage); /* it is the output now: release must not remove it */
		cv->stage = NULL;
	}
	return s;
}

/* What the result says of a finished run, beyond the plan. */
void weld__fill_result(conversion *cv)
{
	cv->res->fp16_overflows = cv->ex.fp16_overflows;
	cv->res->file_crc32 = cv->file_crc;
	cv->res->seconds = cv->ex.seconds;
}

uint64_t weld__total_bytes_read(const weld_ckpt *c)
{
	uint64_t n = 0;
	for (size_t i = 0; i < c->nsrc; i++)
		n += atomic_load(&c->src[i].file->bytes_read);
	return n;
}

void weld__release(conversion *cv)
{
	for (size_t k = 0; cv->weights && k < cv->w->nfiles; k++)
		weld__atomic_abort(&cv->weights[k]);
	free(cv->weights);
	free(cv->file_crcs);
	weld__stage_discard(cv->stage);
	free(cv->stage);
	weld__lock_release(&cv->lock); /* after the staging folder is gone: the next holder finds none */
	weld__target_free(&cv->target);
	weld__free_strings(cv->side, cv->nside);
	free(cv->ex.tensor_crcs);
	weld_writer_free(cv->w);
	weld_backend_close(cv->b);
	weld_plan_free(cv->p);
	weld_ckpt_free(cv->c);
	free(cv->side_dir);
	free(cv->job_dir);
	cJSON_Delete(cv->job);
	free(cv->job_globals);
}
