/*
 * DeepSpeed checkpoint folders (shared docs: deepspeed-zero-format.md): find
 * the tag folder, its model-states and optimizer-states files, and what they
 * say about the run (stage, world size, version). Rebuilding the parameters
 * from the partitions is zero.c's job.
 *
 * File names inside a tag folder:
 *   mp_rank_00_model_states.pt                       stage 0-2 (one file)
 *   zero_pp_rank_R_mp_rank_00_model_states.pt        stage 3 (one per rank)
 *   [bf16_]zero_pp_rank_R_mp_rank_00_optim_states.pt ZeRO optimizer partitions
 */
#include "formats/deepspeed.h"

#include "formats/torch_file.h"
#include "formats/unsupported.h"
#include "formats/zero.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LATEST_MAX_BYTES 4096

enum ds_file_kind { DS_MODEL, DS_ZERO3_MODEL, DS_OPTIM, DS_BF16_OPTIM, DS_OTHER };

/* Parses NAME; *RANK and *MP get the numbers it carries. */
static enum ds_file_kind classify(const char *name, unsigned *rank, unsigned *mp)
{
	char check[256];
	*rank = 0;
	if (sscanf(name, "mp_rank_%2u_model_states.pt", mp) == 1) {
		snprintf(check, sizeof(check), "mp_rank_%02u_model_states.pt", *mp);
		if (strcmp(check, name) == 0)
			return DS_MODEL;
	}
	static const struct {
		const char *fmt, *print;
		enum ds_file_kind kind;
	} zero[] = {
		{"zero_pp_rank_%u_mp_rank_%2u_model_states.pt", "zero_pp_rank_%u_mp_rank_%02u_model_states.pt",
		 DS_ZERO3_MODEL},
		{"zero_pp_rank_%u_mp_rank_%2u_optim_states.pt", "zero_pp_rank_%u_mp_rank_%02u_optim_states.pt",
		 DS_OPTIM},
		{"bf16_zero_pp_rank_%u_mp_rank_%2u_optim_states.pt",
		 "bf16_zero_pp_rank_%u_mp_rank_%02u_optim_states.pt", DS_BF16_OPTIM},
	};
	for (size_t i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
		if (sscanf(name, zero[i].fmt, rank, mp) == 2) {
			snprintf(check, sizeof(check), zero[i].print, *rank, *mp);
			if (strcmp(check, name) == 0)
				return zero[i].kind;
		}
	return DS_OTHER;
}

static bool holds_model_states(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;
	unsigned rank, mp;
	while (d && !found && (e = readdir(d))) {
		enum ds_file_kind k = classify(e->d_name, &rank, &mp);
		found = k == DS_MODEL || k == DS_ZERO3_MODEL;
	}
	if (d)
		closedir(d);
	return found;
}

bool weld__deepspeed_present(const char *dir)
{
	char *latest = weld__path_join(dir, "latest");
	bool yes = latest && weld__is_file(latest);
	free(latest);
	return yes || holds_model_states(dir);
}

/* A copy of the first N bytes of S that lives as long as C. */
static const char *keep(weld_ckpt *c, const char *s, size_t n)
{
	return weld__ckpt_own(c, weld__strndup(s, n));
}

/* DIR is the tag folder itself: its last path component is the tag. */
static weld_status tag_is_dir(weld_ckpt *c, weld_deepspeed_info *ds, const char *dir, weld_error *err)
{
	size_t end = strlen(dir);
	while (end > 1 && dir[end - 1] == '/') /* "x/tag/" */
		end--;
	size_t start = end;
	while (start > 0 && dir[start - 1] != '/')
		start--;
	ds->tag = keep(c, dir + start, end - start);
	ds->tag_dir = keep(c, dir, strlen(dir));
	return ds->tag && ds->tag_dir ? WELD_OK : weld__nomem(err);
}

/* The tag folder: DIR itself, or DIR/<contents of DIR/latest>. */
static weld_status find_tag(weld_ckpt *c, weld_deepspeed_info *ds, const char *dir, weld_error *err)
{
	if (holds_model_states(dir))
		return tag_is_dir(c, ds, dir, err);
	char *latest = weld__path_join(dir, "latest"), *text = NULL;
	size_t len;
	if (!latest)
		return weld__nomem(err);
	weld_status s = weld__read_small_file(latest, LATEST_MAX_BYTES, &text, &len, err);
	while (!s && len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (!s && (!len || strchr(text, '/') || strcmp(text, "..") == 0 || strcmp(text, ".") == 0))
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: does not name a tag folder ('%s')", latest, text);
	if (!s) {
		char *tag_dir = weld__path_join(dir, text);
		ds->tag = keep(c, text, len);
		ds->tag_dir = tag_dir ? keep(c, tag_dir, strlen(tag_dir)) : NULL;
		free(tag_dir);
		if (!ds->tag || !ds->tag_dir)
			s = weld__nomem(err);
	}
	if (!s && (!weld__is_dir(ds->tag_dir) || !holds_model_states(ds->tag_dir)))
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: names tag '%s', but %s holds no model states file", latest,
			       text, ds->tag_dir);
	free(text);
	free(latest);
	return s;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What a tag folder holds, by kind of file. */
typedef struct ds_files {
	const char **paths; /* sorted; the strings belong to the checkpoint */
	size_t n;
	unsigned nmodel, nzero3, noptim, nbf16, max_rank;
	char bad_mp[256]; /* a tensor/pipeline parallel file, if any */
} ds_files;

/* Note the DeepSpeed file NAME of the tag folder in F. */
static weld_status note_file(weld_ckpt *c, const char *tag_dir, const char *name, ds_files *f, weld_error *err)
{
	unsigned rank, mp;
	enum ds_file_kind k = classify(name, &rank, &mp);
	if (k == DS_OTHER)
		return WELD_OK;
	if (mp != 0 && !f->bad_mp[0])
		snprintf(f->bad_mp, sizeof(f->bad_mp), "%s", name);
	const char **grown = weld__reallocarray(f->paths, f->n + 1, sizeof(*f->paths));
	if (!grown)
		return weld__nomem(err);
	f->paths = grown;
	if (!(f->paths[f->n] = weld__ckpt_own(c, weld__path_join(tag_dir, name))))
		return weld__nomem(err);
	f->n++;
	f->nmodel += k == DS_MODEL;
	f->nzero3 += k == DS_ZERO3_MODEL;
	f->noptim += k == DS_OPTIM;
	f->nbf16 += k == DS_BF16_OPTIM;
	if (k != DS_MODEL && rank > f->max_rank)
		f->max_rank = rank;
	return WELD_OK;
}

/* The DeepSpeed files of TAG_DIR, sorted, refusing what weld cannot rebuild. */
static weld_status list_files(weld_ckpt *c, const char *tag_dir, ds_files *f, weld_error *err)
{
	DIR *d = opendir(tag_dir);
	if (!d)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot list the folder", tag_dir);
	struct dirent *e;
	weld_status s = WELD_OK;
	while (!s && (e = readdir(d)))
		s = note_file(c, tag_dir, e->d_name, f, err);
	closedir(d);
	if (s)
		return s;
	qsort(f->paths, f->n, sizeof(*f->paths), cmp_name);
	if (f->bad_mp[0])
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: tensor or pipeline parallel checkpoints are not supported (found %s)", tag_dir,
				  f->bad_mp);
	if (f->noptim && f->nbf16)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: holds both bf16_zero_pp_rank_* and zero_pp_rank_* optimizer files",
				  tag_dir);
	if (f->max_rank > 65535)
		return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: rank %u is beyond the 65536 ranks weld handles", tag_dir,
				  f->max_rank);
	return WELD_OK;
}

/* Every rank 0..WORLD-1 needs its files; the first one missing is named. */
static weld_status check_ranks(const char *tag_dir, const ds_files *f, int world, weld_error *err)
{
	bool optim = f->noptim + f->nbf16 > 0;
	for (int r = 0; r < world; r++) {
		char want[2][128];
		int nwant = 0;
		if (optim)
			snprintf(want[nwant++], sizeof(want[0]), "%szero_pp_rank_%d_mp_rank_00_optim_states.pt",
				 f->nbf16 ? "bf16_" : "", r);
		if (f->nzero3)
			snprintf(want[nwant++], sizeof(want[0]), "zero_pp_rank_%d_mp_rank_00_model_states.pt", r);
		for (int k = 0; k < nwant; k++) {
			char *p = weld__path_join(tag_dir, want[k]);
			bool there = p && weld__is_file(p);
			free(p);
			if (!there)
				return weld__fail(err, WELD_ERR_MISMATCH, "%s: missing %s (rank %d of %d)", tag_dir, want[k],
						  r, world);
		}
	}
	return WELD_OK;
}

/* Integer value of a pickled int or a ZeroStageEnum member. */
static int stage_of(const weld_py *v)
{
	static const char *const names[] = {"disabled", "optimizer_states", "gradients", "weights"};
	if (!v)
		return -1;
	if (v->kind == WELD_PY_INT && !v->i.big)
		return (int)v->i.v;
	if (v->kind != WELD_PY_OBJECT || !v->obj.args)
		return -1;
	const weld_py *a = v->obj.args;
	if (a->kind == WELD_PY_TUPLE && a->seq.n == 1)
		a = a->seq.items[0];
	if (a->kind == WELD_PY_INT && !a->i.big)
		return (int)a->i.v;
	for (int i = 0; i < 4; i++)
		if (weld_py_is_str(a, names[i]))
			return i;
	return -1;
}

static int int_of(const weld_py *v)
{
	return v && v->kind == WELD_PY_INT && !v->i.big && v->i.v >= 0 && v->i.v <= 1 << 24 ? (int)v->i.v : -1;
}

/* Rank 0's model states: what the run was (version, world size); *SRC its source. */
static weld_status read_states(weld_ckpt *c, weld_deepspeed_info *ds, const ds_files *f, int world, uint32_t *src,
			       weld_error *err)
{
	const char *name = f->nzero3 ? "zero_pp_rank_0_mp_rank_00_model_states.pt" : "mp_rank_00_model_states.pt";
	char *path = weld__path_join(ds->tag_dir, name);
	const weld_py *states;
	if (!path)
		return weld__nomem(err);
	weld_status s = weld__is_file(path) ? weld__torch_source(c, path, src, &states, err)
					    : weld__fail(err, WELD_ERR_MISMATCH, "%s: missing %s", ds->tag_dir, name);
	free(path);
	if (s)
		return s;
	path = c->src[*src].file->path;
	if (states->kind != WELD_PY_DICT || !weld_py_dict_get(states, "module"))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not a DeepSpeed model states file (no 'module')", path);
	const weld_py *ver = weld_py_dict_get(states, "ds_version");
	if (ver && ver->kind == WELD_PY_STR && !(ds->ds_version = keep(c, ver->str.s, ver->str.len)))
		return weld__nomem(err);
	int dp = int_of(weld_py_dict_get(states, "dp_world_size"));
	if (dp > 0 && world > 0 && dp != world)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: dp_world_size is %d but the folder holds files for %d ranks",
				  path, dp, world);
	ds->world_size = world > 0 ? world : (dp > 0 ? dp : 1);
	return WELD_OK;
}

/*
 * The ZeRO stage: 3 with per-rank model states; else what rank 0's
 * optimizer says (BF16_Optimizer says nothing: zero_to_fp32 refuses it);
 * 0 without optimizer partitions; else the config's.
 */
static weld_status find_stage(weld_ckpt *c, weld_deepspeed_info *ds, const ds_files *f, uint32_t states_src,
			      weld_error *err)
{
	bool optim = f->noptim + f->nbf16 > 0;
	ds->zero_stage = f->nzero3 ? 3 : -1;
	if (optim && ds->zero_stage < 0) {
		/* Looked at, not listed: a stage-0 run does not read its optimizer files. */
		char *path = weld__path_join(ds->tag_dir, f->nbf16 ? "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
								   : "zero_pp_rank_0_mp_rank_00_optim_states.pt");
		weld_file *file = NULL;
		weld_torch *t = NULL;
		weld_status s = path ? weld__torch_peek(c, path, &file, &t, err) : weld__nomem(err);
		free(path);
		if (s)
			return s;
		const weld_py *osd = weld_py_dict_get(weld_torch_root(t), "optimizer_state_dict");
		const weld_py *zs = weld_py_dict_get(osd, "zero_stage");
		ds->bf16_optimizer = osd && !zs;
		ds->zero_stage = stage_of(zs);
		weld_torch_close(t);
		weld_file_close(file);
	}
	if (ds->zero_stage < 0 && !optim)
		ds->zero_stage = 0;
	if (ds->zero_stage < 0) {
		const weld_py *states = weld_torch_root(weld__torch_of(c, states_src));
		const weld_py *zo = weld_py_dict_get(weld_py_dict_get(states, "ds_config"), "zero_optimization");
		ds->zero_stage = stage_of(weld_py_dict_get(zo, "stage"));
	}
	if (ds->zero_stage < 0 || ds->zero_stage > 3)
		return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: unknown ZeRO stage", ds->tag_dir);
	if (ds->zero_stage > 0 && !optim)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: ZeRO stage %d but no optimizer states files", ds->tag_dir,
				  ds->zero_stage);
	return WELD_OK;
}

/* The optimizer and (stage 3) model states files by rank, then the tensors. */
static weld_status build(weld_ckpt *c, const weld_deepspeed_info *ds, const ds_files *f, int world,
			 uint32_t states_src, weld_error *err)
{
	zero_layout z = {.stage = ds->zero_stage, .world = world, .states_src = states_src};
	size_t slots = (size_t)(world > 0 ? world : 1);
	z.optim_paths = weld__calloc(slots, sizeof(char *));
	z.model_paths = weld__calloc(slots, sizeof(char *));
	weld_status s = z.optim_paths && z.model_paths ? WELD_OK : weld__nomem(err);
	for (size_t i = 0; i < f->n && !s; i++) {
		unsigned rank, mp;
		enum ds_file_kind k = classify(strrchr(f->paths[i], '/') + 1, &rank, &mp);
		if ((k == DS_OPTIM || k == DS_BF16_OPTIM) && (int)rank < world)
			z.optim_paths[rank] = f->paths[i];
		if (k == DS_ZERO3_MODEL && (int)rank < world)
			z.model_paths[rank] = f->paths[i];
	}
	for (int r = 0; !s && z.stage == 3 && r < world; r++)
		if (!z.model_paths[r])
			s = weld__fail(err, WELD_ERR_MISMATCH, "%s: missing the model states file of rank %d", ds->tag_dir, r);
	if (!s)
		s = weld__zero_build(c, &z, err);
	free(z.optim_paths);
	free(z.model_paths);
	return s;
}

/* "ZeRO-2, 8 ranks, tag global_step300": what a log line says of the run. */
static weld_status describe(weld_ckpt *c, const weld_deepspeed_info *ds, weld_error *err)
{
	char stage[32] = "", ranks[32] = "";
	if (ds->bf16_optimizer)
		snprintf(stage, sizeof(stage), "BF16_Optimizer, ");
	else if (ds->zero_stage >= 0)
		snprintf(stage, sizeof(stage), "ZeRO-%d, ", ds->zero_stage);
	if (ds->world_size > 0)
		snprintf(ranks, sizeof(ranks), "%d rank%s, ", ds->world_size, ds->world_size == 1 ? "" : "s");
	c->description = weld__ckpt_own(c, weld__format("%s%stag %s", stage, ranks, ds->tag));
	return c->description ? WELD_OK : weld__nomem(err);
}

weld_status weld__deepspeed_open(weld_ckpt *c, const char *dir, weld_error *err)
{
	weld_deepspeed_info *ds = weld__ckpt_own(c, calloc(1, sizeof(*ds)));
	ds_files f = {0};
	uint32_t states_src = 0;
	if (!ds)
		return weld__nomem(err);
	weld_status s = find_tag(c, ds, dir, err);
	/* ds_to_universal copies the model states into its tag: read alone, they would pass for stage 0. */
	if (!s)
		s = weld__unsupported_ds_tag(ds->tag_dir, err);
	if (!s)
		s = list_files(c, ds->tag_dir, &f, err);
	int world = (f.noptim + f.nbf16 || f.nzero3) ? (int)f.max_rank + 1 : 0;
	if (!s)
		s = check_ranks(ds->tag_dir, &f, world, err);
	if (!s)
		s = read_states(c, ds, &f, world, &states_src, err);
	if (!s)
		s = find_stage(c, ds, &f, states_src, err);
	if (s) {
		free(f.paths);
		return s;
	}
	if (f.n && !(f.paths = weld__ckpt_own(c, f.paths)))
		return weld__nomem(err);
	ds->bf16_files = f.nbf16 > 0;
	ds->nfiles = f.n;
	ds->files = f.paths;
	c->deepspeed = ds;
	c->format = WELD_FORMAT_DEEPSPEED;
	s = build(c, ds, &f, world, states_src, err);
	if (!s)
		s = describe(c, ds, err);
	return s;
}
