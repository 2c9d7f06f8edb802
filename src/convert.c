/*
 * weld_convert: checkpoint -> plan -> layout -> execute -> finish. The
 * weights go to a temporary file in the output folder, are fsynced and
 * renamed; side files and the manifest follow. Any failure or a cancel
 * removes the temporary file, so no half-written weights file ever exists
 * under the final name.
 */
#include "formats/ckpt.h"
#include "pipeline/execute.h"
#include "output/manifest.h"
#include "output/output_dir.h"
#include "pipeline/plan.h"
#include "io/safetensors.h"
#include "output/torch_bin.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define DEFAULT_CHUNK_BYTES (8u << 20)
#define CONFIG_MAX_BYTES (16u << 20)

static const char *dtype_label(weld_out_dtype d)
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

static bool config_ties_embeddings(const char *side_dir)
{
	char *path = weld__path_join(side_dir, "config.json"), *text = NULL;
	size_t len;
	bool tie = false;
	if (path && weld__is_file(path) && weld__read_small_file(path, CONFIG_MAX_BYTES, &text, &len, NULL) == WELD_OK) {
		cJSON *c = cJSON_ParseWithLength(text, len);
		tie = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings"));
		cJSON_Delete(c);
	}
	free(text);
	free(path);
	return tie;
}

/* The dtype config.json should name: the output dtype, or with --dtype keep the floats' common one. */
static const char *config_dtype(const weld_plan *p, weld_out_dtype want)
{
	if (want != WELD_OUT_KEEP)
		return dtype_label(want);
	weld_dtype seen = WELD_DTYPE_INVALID;
	for (size_t i = 0; i < p->nt; i++) {
		weld_dtype d = p->t[i].dtype;
		if (weld_plan_out_dtype(d, WELD_OUT_BF16) != WELD_DTYPE_BF16)
			continue; /* not a float */
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

/* The safetensors writer's order: dtype descending, then name bytewise. */
static int cmp_writer_order(const void *a, const void *b)
{
	const weld_plan_tensor *x = a, *y = b;
	if (x->dtype != y->dtype)
		return x->dtype > y->dtype ? -1 : 1;
	return strcmp(x->name, y->name);
}

typedef struct layout {
	uint8_t *header; /* safetensors prefix */
	size_t header_len;
	weld_tw_layout *tw;
	uint64_t file_size;
} layout;

static weld_status layout_safetensors(weld_plan *p, layout *l, weld_error *err)
{
	/* Sorting the plan first makes file order and plan order the same. */
	qsort(p->t, p->nt, sizeof(*p->t), cmp_writer_order);
	weld_st_out_tensor *st = weld__calloc(p->nt ? p->nt : 1, sizeof(*st));
	if (!st)
		return weld__nomem(err);
	for (size_t i = 0; i < p->nt; i++)
		st[i] = (weld_st_out_tensor){p->t[i].name, p->t[i].dtype, p->t[i].ndim, p->t[i].shape, 0, 0};
	static const char *const key[] = {"format"}, *const val[] = {"pt"};
	uint64_t data_len;
	weld_status s = weld_st_build_header(st, p->nt, key, val, 1, &l->header, &l->header_len, &data_len, err);
	for (size_t i = 0; !s && i < p->nt; i++) {
		if (st[i].name != p->t[i].name) /* same comparator: cannot happen */
			s = weld__fail(err, WELD_ERR_INVALID_ARG, "safetensors order mismatch at '%s'", p->t[i].name);
		p->t[i].offset = l->header_len + st[i].offset;
	}
	l->file_size = l->header_len + data_len;
	free(st);
	return s;
}

static weld_status layout_torch(weld_plan *p, layout *l, weld_error *err)
{
	weld_tw_tensor *tw = weld__calloc(p->nt ? p->nt : 1, sizeof(*tw));
	if (!tw)
		return weld__nomem(err);
	for (size_t i = 0; i < p->nt; i++)
		tw[i] = (weld_tw_tensor){p->t[i].name, p->t[i].dtype, p->t[i].ndim, p->t[i].shape, p->t[i].nbytes, 0};
	weld_status s = weld_tw_layout_new(&l->tw, tw, p->nt, "pytorch_model", &l->file_size, err);
	for (size_t i = 0; !s && i < p->nt; i++)
		p->t[i].offset = tw[i].offset;
	free(tw);
	return s;
}

static int default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd); /* best effort: the rename is already visible */
		close(fd);
	}
}

/* Writing into the input folder would treat the input's shards as stale outputs. */
static weld_status refuse_same_folder(const char *input_dir, const char *output_dir, weld_error *err)
{
	struct stat a, b;
	if (stat(input_dir, &a) == 0 && stat(output_dir, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return weld__fail(err, WELD_ERR_INVALID_ARG,
				  "%s: the output folder is the input's folder; choose another --output", output_dir);
	return WELD_OK;
}

static uint64_t total_bytes_read(const weld_ckpt *c)
{
	uint64_t n = 0;
	for (size_t i = 0; i < c->nsrc; i++)
		n += atomic_load(&c->src[i].file->bytes_read);
	return n;
}

/* The backend for DEVICE; when CUDA is not used after all, RES's notice says why. */
static weld_status open_backend(weld_backend **b, weld_device device, weld_convert_result *res, weld_error *err)
{
	char why[sizeof(res->notice)];
	weld_status s = weld_backend_open(b, device, why, sizeof(why), err);
	if (!s && why[0])
		snprintf(res->notice, sizeof(res->notice), "CUDA not used (%s); converting on the CPU", why);
	return s;
}

weld_status weld_convert(const char *input, const char *output_dir, const weld_convert_options *options,
			 weld_convert_result *res, weld_error *err)
{
	weld_error scratch;
	if (!err)
		err = &scratch;
	weld_convert_result local;
	if (!res)
		res = &local;
	memset(res, 0, sizeof(*res));
	weld_convert_options opts = WELD_CONVERT_OPTIONS_INIT;
	if (options)
		opts = *options;
	const char *weights = opts.pytorch_bin ? "pytorch_model.bin" : "model.safetensors";

	weld_ckpt *c = NULL;
	weld_plan *p = NULL;
	weld_backend *b = NULL;
	layout l = {0};
	weld_exec_result ex = {0};
	char **side = NULL;
	size_t nside = 0;
	char tmp[4096] = "", final[4096];
	char *side_dir = side_dir_of(input);
	int fd = -1;
	uint32_t file_crc = 0;
	weld_status s = side_dir ? WELD_OK : weld__nomem(err);

	if (!s && (size_t)snprintf(final, sizeof(final), "%s/%s", output_dir, weights) >= sizeof(final))
		s = weld__fail(err, WELD_ERR_INVALID_ARG, "%s: path too long", output_dir);
	if (!s)
		s = refuse_same_folder(side_dir, output_dir, err);
	if (!s)
		s = weld_ckpt_open_as(&c, input, opts.type, err);
	if (!s) {
		weld_plan_options po = {.dtype = opts.dtype, .tie_word_embeddings = config_ties_embeddings(side_dir)};
		s = weld_plan_build(&p, c, &po, err);
	}
	if (!s && !opts.dry_run)
		s = weld_output_dir_prepare(output_dir, weights, opts.force, err);
	if (!s)
		s = open_backend(&b, opts.device, res, err);
	if (!s)
		s = opts.pytorch_bin ? layout_torch(p, &l, err) : layout_safetensors(p, &l, err);
	if (!s && opts.dry_run) {
		/* The plan alone says what a real run would read and write. */
		res->tensors = p->nt;
		res->tied = p->nalias;
		res->bytes_read = p->src_bytes;
		res->bytes_written = l.file_size;
		snprintf(res->backend, sizeof(res->backend), "%s", weld_backend_name(b));
		snprintf(res->stripped_prefix, sizeof(res->stripped_prefix), "%s", p->stripped_prefix);
		snprintf(res->output_file, sizeof(res->output_file), "%s", final);
		goto cleanup;
	}
	if (!s) {
		snprintf(tmp, sizeof(tmp), "%s/.%s.weld-tmp-%ld", output_dir, weights, (long)getpid());
		fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			s = weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
		else if (ftruncate(fd, (off_t)l.file_size) != 0)
			s = weld__fail(err, WELD_ERR_IO, "%s: cannot size to %llu bytes: %s", tmp,
				       (unsigned long long)l.file_size, strerror(errno));
	}
	if (!s)
		s = opts.pytorch_bin ? weld_tw_write_head(l.tw, fd, tmp, err)
				     : weld_pwrite_all(fd, tmp, l.header, l.header_len, 0, err);
	if (!s) {
		res->threads = opts.threads > 0 ? opts.threads : default_threads();
		weld_exec_options eo = {.threads = res->threads,
					.chunk_bytes = opts.chunk_bytes ? opts.chunk_bytes : DEFAULT_CHUNK_BYTES,
					.progress = opts.progress,
					.payload = opts.payload};
		s = weld_execute(p, b, fd, tmp, &eo, &ex, err);
	}
	if (!s && opts.pytorch_bin) {
		s = weld_tw_finish(l.tw, fd, tmp, ex.tensor_crcs, &file_crc, err);
	} else if (!s) {
		/* safetensors: header, then every tensor back to back in plan order. */
		file_crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), l.header, (uInt)l.header_len);
		for (size_t i = 0; i < p->nt; i++)
			file_crc = (uint32_t)crc32_combine64(file_crc, ex.tensor_crcs[i], (z_off64_t)p->t[i].nbytes);
	}
	if (!s && (fsync(fd) != 0 || close(fd) != 0)) {
		fd = -1;
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot flush: %s", tmp, strerror(errno));
	}
	if (!s) {
		fd = -1;
		/* A manifest from an earlier run must never describe these new weights. */
		char old[4096];
		snprintf(old, sizeof(old), "%s/%s", output_dir, WELD_MANIFEST_NAME);
		if (unlink(old) != 0 && errno != ENOENT)
			s = weld__fail(err, WELD_ERR_IO, "%s: cannot remove: %s", old, strerror(errno));
	}
	if (!s && rename(tmp, final) != 0)
		s = weld__fail(err, WELD_ERR_IO, "%s: cannot rename into place: %s", final, strerror(errno));
	if (!s) {
		tmp[0] = '\0';
		fsync_dir(output_dir);
		s = weld_copy_side_files(side_dir, output_dir, config_dtype(p, opts.dtype), &side, &nside, err);
	}
	if (!s) {
		weld_manifest_info mi = {.source = input,
					 .source_format = weld_format_name(weld_ckpt_format(c)),
					 .dtype = dtype_label(opts.dtype),
					 .weights_file = weights,
					 .file_size = l.file_size,
					 .file_crc32 = file_crc,
					 .tensor_crcs = ex.tensor_crcs,
					 .fp16_overflows = ex.fp16_overflows,
					 .side_files = side,
					 .nside = nside};
		s = weld_manifest_write(output_dir, p, &mi, err);
		fsync_dir(output_dir);
	}
	if (!s) {
		res->tensors = p->nt;
		res->tied = p->nalias;
		res->bytes_written = l.file_size;
		res->fp16_overflows = ex.fp16_overflows;
		res->file_crc32 = file_crc;
		res->seconds = ex.seconds;
		snprintf(res->backend, sizeof(res->backend), "%s", weld_backend_name(b));
		snprintf(res->stripped_prefix, sizeof(res->stripped_prefix), "%s", p->stripped_prefix);
		snprintf(res->output_file, sizeof(res->output_file), "%s", final);
	}
	if (c)
		res->bytes_read = total_bytes_read(c);
cleanup:
	if (fd >= 0)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	weld_free_strings(side, nside);
	free(ex.tensor_crcs);
	free(l.header);
	weld_tw_layout_free(l.tw);
	weld_backend_close(b);
	weld_plan_free(p);
	weld_ckpt_free(c);
	free(side_dir);
	return s;
}
