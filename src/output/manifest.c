/* weld.json: what was written, with checksums a verifier can recompute. */
#include "output/manifest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

weld_status weld__write_file_atomic(const char *dir, const char *name, const void *data, size_t len,
				    weld_error *err)
{
	char tmp[4096], final[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.weld-tmp-%ld", dir, name, (long)getpid()) >= sizeof(tmp) ||
	    (size_t)snprintf(final, sizeof(final), "%s/%s", dir, name) >= sizeof(final))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: path too long", dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
	const char *p = data;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			close(fd);
			unlink(tmp);
			return weld__fail(err, WELD_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		int e = errno;
		unlink(tmp);
		return weld__fail(err, WELD_ERR_IO, "%s: cannot flush: %s", tmp, strerror(e));
	}
	if (rename(tmp, final) != 0) {
		int e = errno;
		unlink(tmp);
		return weld__fail(err, WELD_ERR_IO, "%s: cannot rename into place: %s", final, strerror(e));
	}
	return WELD_OK;
}

weld_status weld_manifest_write(const char *dir, const weld_plan *p, const weld_manifest_info *info,
				weld_error *err)
{
	cJSON *o = cJSON_CreateObject(), *files = cJSON_CreateArray(), *f = cJSON_CreateObject();
	cJSON *tensors = cJSON_CreateArray(), *tied = cJSON_CreateObject(), *side = cJSON_CreateArray();
	cJSON_AddStringToObject(o, "tool", "weld");
	cJSON_AddStringToObject(o, "version", weld_version());
	cJSON_AddStringToObject(o, "source", info->source);
	cJSON_AddStringToObject(o, "source_format", info->source_format);
	cJSON_AddStringToObject(o, "dtype", info->dtype);
	cJSON_AddStringToObject(f, "name", info->weights_file);
	cJSON_AddNumberToObject(f, "size", (double)info->file_size);
	cJSON_AddNumberToObject(f, "crc32", (double)info->file_crc32);
	cJSON_AddNumberToObject(f, "tensor_count", (double)p->nt);
	cJSON_AddItemToArray(files, f);
	cJSON_AddItemToObject(o, "files", files);
	for (size_t i = 0; i < p->nt; i++) {
		const weld_plan_tensor *t = &p->t[i];
		cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray();
		cJSON_AddStringToObject(e, "name", t->name);
		cJSON_AddStringToObject(e, "dtype", weld_dtype_name(t->dtype));
		for (size_t d = 0; d < t->ndim; d++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
		cJSON_AddItemToObject(e, "shape", shape);
		cJSON_AddNumberToObject(e, "offset", (double)t->offset);
		cJSON_AddNumberToObject(e, "bytes", (double)t->nbytes);
		cJSON_AddNumberToObject(e, "crc32", (double)info->tensor_crcs[i]);
		cJSON_AddItemToArray(tensors, e);
	}
	cJSON_AddItemToObject(o, "tensors", tensors);
	for (size_t i = 0; i < p->nalias; i++)
		cJSON_AddStringToObject(tied, p->alias[i].name, p->alias[i].owner);
	cJSON_AddItemToObject(o, "tied", tied);
	cJSON_AddStringToObject(o, "stripped_prefix", p->stripped_prefix);
	cJSON_AddNumberToObject(o, "fp16_overflows", (double)info->fp16_overflows);
	for (size_t i = 0; i < info->nside; i++)
		cJSON_AddItemToArray(side, cJSON_CreateString(info->side_files[i]));
	cJSON_AddItemToObject(o, "side_files", side);
	char *text = cJSON_Print(o);
	cJSON_Delete(o);
	if (!text)
		return weld__nomem(err);
	size_t n = strlen(text);
	char *withnl = realloc(text, n + 2);
	if (!withnl) {
		free(text);
		return weld__nomem(err);
	}
	withnl[n] = '\n';
	withnl[n + 1] = '\0';
	weld_status s = weld__write_file_atomic(dir, WELD_MANIFEST_NAME, withnl, n + 1, err);
	free(withnl);
	return s;
}

weld_status weld_output_intact(const char *dir, weld_error *err)
{
	char path[4096], *text = NULL;
	size_t len;
	weld_error scratch;
	if (!err)
		err = &scratch;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, WELD_MANIFEST_NAME) >= sizeof(path))
		return weld__fail(err, WELD_ERR_INVALID_ARG, "%s: path too long", dir);
	weld_file *f = NULL;
	weld_status s = weld_file_open(&f, path, err);
	if (!s && f->size > (64u << 20))
		s = weld__fail(err, WELD_ERR_LIMIT, "%s: larger than 64 MiB", path);
	if (!s && !(text = malloc((size_t)f->size + 1)))
		s = weld__nomem(err);
	if (!s && !(s = weld_file_pread(f, text, (size_t)f->size, 0, err)))
		len = (size_t)f->size;
	weld_file_close(f);
	if (s) {
		free(text);
		return s;
	}
	cJSON *m = cJSON_ParseWithLength(text, len);
	free(text);
	const cJSON *file = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "files"), 0);
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(file, "name"));
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(file, "size");
	const cJSON *crc = cJSON_GetObjectItemCaseSensitive(file, "crc32");
	if (!name || strchr(name, '/') || !cJSON_IsNumber(size) || !cJSON_IsNumber(crc)) {
		cJSON_Delete(m);
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not a weld manifest", path);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uint64_t want_size = (uint64_t)size->valuedouble;
	uint32_t want_crc = (uint32_t)crc->valuedouble;
	cJSON_Delete(m);
	if ((s = weld_file_open(&f, path, err)))
		return s;
	if (f->size != want_size) {
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: %llu bytes, the manifest says %llu", path,
			       (unsigned long long)f->size, (unsigned long long)want_size);
		weld_file_close(f);
		return s;
	}
	uint8_t *buf = malloc(1u << 22);
	uint32_t got = 0;
	if (!buf)
		s = weld__nomem(err);
	for (uint64_t off = 0; !s && off < f->size;) {
		size_t n = f->size - off < (1u << 22) ? (size_t)(f->size - off) : (1u << 22);
		if (!(s = weld_file_pread(f, buf, n, off, err)))
			got = weld__crc32(got, buf, n);
		off += n;
	}
	if (!s && got != want_crc)
		s = weld__fail(err, WELD_ERR_CHECKSUM, "%s: CRC-32 0x%08x, the manifest says 0x%08x", path, got, want_crc);
	free(buf);
	weld_file_close(f);
	return s;
}
