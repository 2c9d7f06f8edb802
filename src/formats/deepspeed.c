/*
 * DeepSpeed checkpoint folders (shared docs: deepspeed-zero-format.md): find
 * the tag folder, its model-states and optimizer-states files, and what they
 * say about the run (stage, world size, version). Reading ZeRO-3 partitions
 * back into parameters is the job of the ZeRO planner; here ZeRO-3
 * parameters are listed from param_shapes with their fp32 master dtype.
 *
 * File names inside a tag folder:
 *   mp_rank_00_model_states.pt                       stage 0-2 (one file)
 *   zero_pp_rank_R_mp_rank_00_model_states.pt        stage 3 (one per rank)
 *   [bf16_]zero_pp_rank_R_mp_rank_00_optim_states.pt ZeRO optimizer partitions
 */
#include "formats/ckpt.h"

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

void weld__deepspeed_clear(ckpt_deepspeed *ds)
{
	free(ds->tag);
	free(ds->tag_dir);
	free(ds->ds_version);
	for (size_t i = 0; i < ds->nfiles; i++)
		free(ds->files[i]);
	free(ds->files);
	*ds = (ckpt_deepspeed){0};
}

/* The tag folder: DIR itself, or DIR/<contents of DIR/latest>. */
static weld_status find_tag(ckpt_deepspeed *ds, const char *dir, weld_error *err)
{
	if (holds_model_states(dir)) {
		const char *base = strrchr(dir, '/');
		while (base && base[1] == '\0' && base > dir) { /* "x/tag/" */
			const char *p = base - 1;
			while (p > dir && *p != '/')
				p--;
			base = p;
		}
		ds->tag = weld__strdup(base && *base == '/' ? base + 1 : dir);
		if (ds->tag) {
			size_t n = strlen(ds->tag);
			while (n && ds->tag[n - 1] == '/')
				ds->tag[--n] = '\0';
		}
		ds->tag_dir = weld__strdup(dir);
		return ds->tag && ds->tag_dir ? WELD_OK : weld__nomem(err);
	}
	char *latest = weld__path_join(dir, "latest"), *text = NULL;
	size_t len;
	if (!latest)
		return weld__nomem(err);
	weld_status s = weld__read_small_file(latest, LATEST_MAX_BYTES, &text, &len, err);
	if (s) {
		free(latest);
		return s;
	}
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		text[--len] = '\0';
	if (!len || strchr(text, '/') || strcmp(text, "..") == 0 || strcmp(text, ".") == 0) {
		s = weld__fail(err, WELD_ERR_FORMAT, "%s: does not name a tag folder ('%s')", latest, text);
		free(text);
		free(latest);
		return s;
	}
	ds->tag = text;
	ds->tag_dir = weld__path_join(dir, text);
	if (!ds->tag_dir) {
		free(latest);
		return weld__nomem(err);
	}
	if (!weld__is_dir(ds->tag_dir) || !holds_model_states(ds->tag_dir))
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: names tag '%s', but %s holds no model states file",
			       latest, text, ds->tag_dir);
	free(latest);
	return s;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
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
	return v && v->kind == WELD_PY_INT && !v->i.big && v->i.v >= 0 && v->i.v <= 1 << 24 ? (int)v->i.v
											       : -1;
}

weld_status weld__deepspeed_open(weld_ckpt *c, const char *dir, weld_error *err)
{
	ckpt_deepspeed *ds = &c->ds;
	weld_status s = find_tag(ds, dir, err);
	if (s)
		return s;
	DIR *d = opendir(ds->tag_dir);
	if (!d)
		return weld__fail(err, WELD_ERR_IO, "%s: cannot list the folder", ds->tag_dir);
	unsigned nmodel = 0, nzero3 = 0, noptim = 0, nbf16 = 0, max_rank = 0;
	char bad_mp[256] = "";
	struct dirent *e;
	while ((e = readdir(d))) {
		unsigned rank, mp;
		enum ds_file_kind k = classify(e->d_name, &rank, &mp);
		if (k == DS_OTHER)
			continue;
		if (mp != 0 && !bad_mp[0])
			snprintf(bad_mp, sizeof(bad_mp), "%s", e->d_name);
		char **grown = weld__reallocarray(ds->files, ds->nfiles + 1, sizeof(*ds->files));
		if (!grown || !(grown[ds->nfiles] = weld__path_join(ds->tag_dir, e->d_name))) {
			if (grown)
				ds->files = grown;
			closedir(d);
			return weld__nomem(err);
		}
		ds->files = grown;
		ds->nfiles++;
		nmodel += k == DS_MODEL;
		nzero3 += k == DS_ZERO3_MODEL;
		noptim += k == DS_OPTIM;
		nbf16 += k == DS_BF16_OPTIM;
		if (k != DS_MODEL && rank > max_rank)
			max_rank = rank;
	}
	closedir(d);
	qsort(ds->files, ds->nfiles, sizeof(*ds->files), cmp_name);
	if (bad_mp[0])
		return weld__fail(err, WELD_ERR_UNSUPPORTED,
				  "%s: tensor or pipeline parallel checkpoints are not supported (found %s)",
				  ds->tag_dir, bad_mp);
	if (noptim && nbf16)
		return weld__fail(err, WELD_ERR_MISMATCH,
				  "%s: holds both bf16_zero_pp_rank_* and zero_pp_rank_* optimizer files",
				  ds->tag_dir);
	unsigned nopt = noptim + nbf16;
	if (max_rank > 65535)
		return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: rank %u is beyond the 65536 ranks weld handles",
				  ds->tag_dir, max_rank);
	int world = (nopt || nzero3) ? (int)max_rank + 1 : 0;
	/* Every rank 0..world-1 needs its files; name the first one missing. */
	for (int r = 0; r < world; r++) {
		char want[2][128];
		int nwant = 0;
		if (nopt)
			snprintf(want[nwant++], sizeof(want[0]), "%szero_pp_rank_%d_mp_rank_00_optim_states.pt",
				 nbf16 ? "bf16_" : "", r);
		if (nzero3)
			snprintf(want[nwant++], sizeof(want[0]), "zero_pp_rank_%d_mp_rank_00_model_states.pt", r);
		for (int k = 0; k < nwant; k++) {
			char *p = weld__path_join(ds->tag_dir, want[k]);
			bool there = p && weld__is_file(p);
			free(p);
			if (!there)
				return weld__fail(err, WELD_ERR_MISMATCH, "%s: missing %s (rank %d of %d)", ds->tag_dir,
						  want[k], r, world);
		}
	}
	/* Rank 0's model states says what the run was. */
	char name[128];
	snprintf(name, sizeof(name), nzero3 ? "zero_pp_rank_0_mp_rank_00_model_states.pt"
					    : "mp_rank_00_model_states.pt");
	char *mpath = weld__path_join(ds->tag_dir, name);
	size_t src;
	if (!mpath)
		return weld__nomem(err);
	if (!weld__is_file(mpath)) {
		s = weld__fail(err, WELD_ERR_MISMATCH, "%s: missing %s", ds->tag_dir, name);
		free(mpath);
		return s;
	}
	s = weld__ckpt_add_source(c, mpath, &src, err);
	free(mpath);
	if (s || (s = weld_torch_open(&c->src[src].torch, c->src[src].file, err)))
		return s;
	const weld_py *states = weld_torch_root(c->src[src].torch);
	if (states->kind != WELD_PY_DICT || !weld_py_dict_get(states, "module"))
		return weld__fail(err, WELD_ERR_FORMAT, "%s: not a DeepSpeed model states file (no 'module')",
				  c->src[src].path);
	const weld_py *ver = weld_py_dict_get(states, "ds_version");
	if (ver && ver->kind == WELD_PY_STR && !(ds->ds_version = weld__strdup(ver->str.s)))
		return weld__nomem(err);
	int dp = int_of(weld_py_dict_get(states, "dp_world_size"));
	if (dp > 0 && world > 0 && dp != world)
		return weld__fail(err, WELD_ERR_MISMATCH,
				  "%s: dp_world_size is %d but the folder holds files for %d ranks",
				  c->src[src].path, dp, world);

	int stage = nzero3 ? 3 : -1;
	bool bf16_optimizer = false;
	if (nopt && stage < 0) {
		char *opath = weld__path_join(ds->tag_dir, nbf16 ? "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt"
								 : "zero_pp_rank_0_mp_rank_00_optim_states.pt");
		weld_file *of = NULL;
		weld_torch *ot = NULL;
		if (!opath)
			return weld__nomem(err);
		s = weld_file_open(&of, opath, err);
		if (!s)
			s = weld_torch_open(&ot, of, err);
		if (!s) {
			const weld_py *osd = weld_py_dict_get(weld_torch_root(ot), "optimizer_state_dict");
			const weld_py *zs = weld_py_dict_get(osd, "zero_stage");
			/* BF16_Optimizer states carry no zero_stage; zero_to_fp32 refuses them. */
			bf16_optimizer = osd && !zs;
			stage = stage_of(zs);
		}
		weld_torch_close(ot);
		weld_file_close(of);
		free(opath);
		if (s)
			return s;
	}
	if (stage < 0 && !nopt)
		stage = 0;
	if (stage < 0) {
		const weld_py *zo = weld_py_dict_get(weld_py_dict_get(states, "ds_config"), "zero_optimization");
		stage = stage_of(weld_py_dict_get(zo, "stage"));
	}

	ds->info = (weld_deepspeed_info){
		.tag = ds->tag,
		.tag_dir = ds->tag_dir,
		.zero_stage = stage,
		.world_size = world > 0 ? world : (dp > 0 ? dp : 1),
		.bf16_files = nbf16 > 0,
		.bf16_optimizer = bf16_optimizer,
		.ds_version = ds->ds_version,
		.nfiles = ds->nfiles,
		.files = (const char *const *)ds->files,
	};
	c->format = WELD_FORMAT_DEEPSPEED;
	if (stage < 0 || stage > 3)
		return weld__fail(err, WELD_ERR_UNSUPPORTED, "%s: unknown ZeRO stage", ds->tag_dir);
	if (stage > 0 && !nopt)
		return weld__fail(err, WELD_ERR_MISMATCH, "%s: ZeRO stage %d but no optimizer states files",
				  ds->tag_dir, stage);
	zero_layout z = {.stage = stage, .world = world, .states_src = src};
	z.optim_paths = weld__calloc((size_t)(world > 0 ? world : 1), sizeof(char *));
	z.model_paths = weld__calloc((size_t)(world > 0 ? world : 1), sizeof(char *));
	if (!z.optim_paths || !z.model_paths) {
		free(z.optim_paths);
		free(z.model_paths);
		return weld__nomem(err);
	}
	for (size_t i = 0; i < ds->nfiles; i++) {
		unsigned rank, mp;
		const char *base = strrchr(ds->files[i], '/') + 1;
		enum ds_file_kind k = classify(base, &rank, &mp);
		if ((k == DS_OPTIM || k == DS_BF16_OPTIM) && (int)rank < world)
			z.optim_paths[rank] = ds->files[i];
		if (k == DS_ZERO3_MODEL && (int)rank < world)
			z.model_paths[rank] = ds->files[i];
	}
	for (int r = 0; stage == 3 && r < world && !s; r++)
		if (!z.model_paths[r])
			s = weld__fail(err, WELD_ERR_MISMATCH, "%s: missing the model states file of rank %d",
				       ds->tag_dir, r);
	if (!s)
		s = weld__zero_build(c, &z, err);
	free(z.optim_paths);
	free(z.model_paths);
	return s;
}
