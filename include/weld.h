/*
 * weld: turn a training checkpoint into one servable model.safetensors.
 *
 * The whole public API. Plain C11: no CUDA, cJSON or zlib types appear here.
 * Conventions:
 *  - Every fallible function returns a weld_status (0 = WELD_OK, negative =
 *    failure) and, on failure, fills the caller's weld_error with a one-line
 *    message that names the file and the problem. The library never prints
 *    and never exits.
 *  - Objects returned through an `out` pointer belong to the caller and have a
 *    matching _free/_close; passing NULL to those is a no-op. Pointers returned
 *    by getters are borrowed and live as long as their parent object.
 *  - Threads: functions that take no object (weld_convert, weld_verify,
 *    weld_output_intact, weld_cuda_probe, the name and size lookups) may run
 *    in several threads at once. One weld_ckpt may be read (getters and
 *    weld_ckpt_read_tensor) by several threads at once; freeing it must not
 *    race with any use. weld_convert's progress callback runs on the thread
 *    that called weld_convert.
 *  - Error statuses are stable; a status a caller does not know is a failure.
 *  - Open files: the library keeps at most the soft RLIMIT_NOFILE less 64 of
 *    its input files open at once, process-wide, closing the least recently
 *    read and reopening it when it is read again (a file replaced or changed
 *    by then is WELD_ERR_IO), so a checkpoint may have more files than the
 *    process may open. It never changes the limit: a program that wants
 *    each file opened once raises its own soft limit (the weld tool raises
 *    it to the hard one).
 */
#ifndef WELD_H
#define WELD_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WELD_VERSION_MAJOR 0
#define WELD_VERSION_MINOR 1
#define WELD_VERSION_PATCH 0
#define WELD_VERSION_STRING "0.1.0"

/* Status codes. Values are stable; new ones are only ever appended. */
typedef enum weld_status {
	WELD_OK = 0,
	WELD_ERR_INVALID_ARG = -1, /* caller passed something unusable */
	WELD_ERR_NOMEM = -2,
	WELD_ERR_IO = -3,          /* open/read/write failed (errno text in message) */
	WELD_ERR_FORMAT = -4,      /* corrupt or truncated zip, pickle, JSON, safetensors */
	WELD_ERR_UNSUPPORTED = -5, /* well-formed but not handled (deflate, quantized...) */
	WELD_ERR_UNSAFE = -6,      /* a pickle references code that would run on load */
	WELD_ERR_CHECKSUM = -7,    /* a CRC-32 did not match */
	WELD_ERR_MISMATCH = -8,    /* files of one checkpoint disagree */
	WELD_ERR_LIMIT = -9,       /* a resource bound was hit (depth, memo, size) */
	WELD_ERR_NO_DEVICE = -10,  /* --device cuda (or verify's) without a usable GPU */
	WELD_ERR_CANCELLED = -11,
	WELD_ERR_DEVICE = -12      /* the GPU failed during the run */
} weld_status;

#define WELD_ERROR_MESSAGE_MAX 1024

/* Filled by any failing call. A zeroed struct is a valid "no error". */
typedef struct weld_error {
	weld_status status;
	char message[WELD_ERROR_MESSAGE_MAX];
} weld_error;

/* Static name of a status, e.g. "format error". Never NULL. */
const char *weld_status_str(weld_status status);

/* Library version string, e.g. "0.1.0". */
const char *weld_version(void);

/* What this build and machine offer for the CUDA backend. */
typedef struct weld_cuda_info {
	int built;           /* 1 when weld was built with the CUDA backend */
	int runtime_version; /* CUDA runtime it was built with, e.g. 13000 */
	int devices;         /* usable devices found now (0 when none or no driver) */
	char message[256];   /* why no device is usable, when devices == 0 */
} weld_cuda_info;

/* Probe for CUDA devices. Safe on machines without a driver or libraries. */
void weld_cuda_probe(weld_cuda_info *out);

/*
 * Element types, with their safetensors names (weld_dtype_name). The order is
 * the safetensors writer's sort order (ascending: the reference's Dtype enum,
 * "in increasing alignment order"); the writer emits tensors in descending
 * dtype order, ties by name.
 *
 * F4, F6_E2M3 and F6_E3M2 (the OCP microscaling formats) are narrower than a
 * byte: weld reads them from safetensors files and copies them as bytes,
 * never casting them (weld_dtype_bits).
 */
typedef enum weld_dtype {
	WELD_DTYPE_INVALID = 0,
	WELD_DTYPE_BOOL,
	WELD_DTYPE_F4,
	WELD_DTYPE_F6_E2M3,
	WELD_DTYPE_F6_E3M2,
	WELD_DTYPE_U8,
	WELD_DTYPE_I8,
	WELD_DTYPE_F8_E5M2,
	WELD_DTYPE_F8_E4M3,
	WELD_DTYPE_F8_E8M0,
	WELD_DTYPE_F8_E4M3FNUZ,
	WELD_DTYPE_F8_E5M2FNUZ,
	WELD_DTYPE_I16,
	WELD_DTYPE_U16,
	WELD_DTYPE_F16,
	WELD_DTYPE_BF16,
	WELD_DTYPE_I32,
	WELD_DTYPE_U32,
	WELD_DTYPE_F32,
	WELD_DTYPE_C64,
	WELD_DTYPE_F64,
	WELD_DTYPE_I64,
	WELD_DTYPE_U64,
	WELD_DTYPE_COUNT
} weld_dtype;

/* "F32", "BF16", ... ; NULL for WELD_DTYPE_INVALID or out of range. */
const char *weld_dtype_name(weld_dtype dtype);
/*
 * Bytes per element; 0 for WELD_DTYPE_INVALID. The sub-byte dtypes (F4,
 * F6_*) give 1: weld moves them as bytes, so a tensor's bytes are
 * numel x bits / 8 (a whole number, as the reference reader requires) and
 * the unit weld copies is the byte.
 */
size_t weld_dtype_size(weld_dtype dtype);
/* Bits per element: 4 for F4, 6 for F6_*, 8 x weld_dtype_size otherwise; 0 for invalid. */
size_t weld_dtype_bits(weld_dtype dtype);
/* Inverse of weld_dtype_name; WELD_DTYPE_INVALID when unknown. */
weld_dtype weld_dtype_from_name(const char *name);

#define WELD_MAX_DIMS 16

/* ------------------------------------------------------------------------- */
/* Checkpoints: any input weld reads, opened read-only.                       */

typedef enum weld_format {
	WELD_FORMAT_UNKNOWN = 0,
	WELD_FORMAT_SAFETENSORS,         /* one .safetensors file */
	WELD_FORMAT_SAFETENSORS_SHARDED, /* model.safetensors.index.json + shards */
	WELD_FORMAT_TORCH_ZIP,           /* one torch.save zip file */
	WELD_FORMAT_TORCH_LEGACY,        /* one legacy (non-zip) torch.save file */
	WELD_FORMAT_TORCH_SHARDED,       /* pytorch_model.bin.index.json + shards */
	WELD_FORMAT_DEEPSPEED,           /* a DeepSpeed checkpoint folder */
	WELD_FORMAT_DCP                  /* a PyTorch Distributed Checkpoint (FSDP, torchtitan) folder */
} weld_format;

/* Stable machine name: "safetensors", "torch-zip", "deepspeed", ... */
const char *weld_format_name(weld_format format);

typedef struct weld_ckpt weld_ckpt;

typedef struct weld_tensor_info {
	const char *name;     /* borrowed */
	weld_dtype dtype;
	size_t ndim;
	const uint64_t *shape; /* borrowed, ndim entries */
	uint64_t numel;
	uint64_t nbytes;       /* numel x dtype size */
	const char *file;      /* borrowed: path of the file holding the data */
	int contiguous;        /* 1 when the bytes are one run in the file */
	/*
	 * Name of an earlier tensor this one is the very same view of (a tied
	 * weight stored once under two names), else NULL. Borrowed.
	 */
	const char *alias_of;
} weld_tensor_info;

/* What a DeepSpeed folder turned out to hold (weld_ckpt_deepspeed). */
typedef struct weld_deepspeed_info {
	const char *tag;       /* e.g. "global_step10"; borrowed */
	const char *tag_dir;   /* path of the tag folder; borrowed */
	int zero_stage;        /* 0..3, -1 when unknown */
	int world_size;        /* data-parallel world size, -1 when unknown */
	int bf16_files;        /* 1 when the optimizer files are bf16_zero_pp_rank_* */
	int bf16_optimizer;    /* 1 when DeepSpeed's BF16_Optimizer wrote them (no zero_stage) */
	const char *ds_version;/* borrowed, may be NULL */
	size_t nfiles;
	const char *const *files; /* borrowed: model and optimizer state files */
} weld_deepspeed_info;

typedef enum weld_input_type {
	WELD_INPUT_AUTO = 0,
	WELD_INPUT_HF,  /* HF folder or single file; safetensors preferred over .bin */
	WELD_INPUT_ZERO, /* DeepSpeed checkpoint */
	WELD_INPUT_DCP   /* PyTorch Distributed Checkpoint (FSDP, FSDP2, torchtitan) */
} weld_input_type;

/*
 * Open PATH (a file or a folder), detect its format and list its tensors.
 * Reads headers and pickles only, never tensor data. Folders: HF sharded
 * (index file), a single weights file, or a DeepSpeed checkpoint; a folder
 * that holds more than one of these is WELD_ERR_INVALID_ARG.
 */
weld_status weld_ckpt_open(weld_ckpt **out, const char *path, weld_error *err);
/* Like weld_ckpt_open, of the given TYPE only (HF: safetensors before .bin). */
weld_status weld_ckpt_open_as(weld_ckpt **out, const char *path, weld_input_type type, weld_error *err);

/* How weld_ckpt_open_with opens. Initialise with WELD_OPEN_OPTIONS_INIT, then set fields. */
typedef struct weld_open_options {
	size_t struct_size;  /* sizeof(weld_open_options), set by the initialiser */
	weld_input_type type;
	/*
	 * Classes ("module.Name") a pickle may reference besides weld's
	 * allowlist, accepted as inert data, never called (the user's
	 * --allow-global). Borrowed for the duration of the open.
	 */
	const char *const *allow_globals;
	size_t nallow_globals;
} weld_open_options;

#define WELD_OPEN_OPTIONS_INIT {sizeof(weld_open_options), WELD_INPUT_AUTO, NULL, 0}

/* weld_ckpt_open_as with OPTIONS (NULL: the defaults). */
weld_status weld_ckpt_open_with(weld_ckpt **out, const char *path, const weld_open_options *options, weld_error *err);
void weld_ckpt_free(weld_ckpt *ckpt);
/*
 * The structural checks weld_convert makes of CKPT before it reads tensor
 * data, without reading any: the plan (names unique after flattening and
 * prefix stripping, view run counts, sizes) and the model.safetensors layout
 * (names a safetensors file can hold). The same errors, word for word. What
 * only reading can find (a record's CRC-32) is not checked.
 */
weld_status weld_ckpt_check(const weld_ckpt *ckpt, weld_error *err);

weld_format weld_ckpt_format(const weld_ckpt *ckpt);
size_t weld_ckpt_tensor_count(const weld_ckpt *ckpt);
/* Fills *out for tensor I (0-based, in the order the source lists them). */
weld_status weld_ckpt_tensor(const weld_ckpt *ckpt, size_t i, weld_tensor_info *out);
/*
 * How many input files tensor I's data is gathered from: 1 for a tensor
 * stored whole, the chunks of a DCP tensor, the ranks' files a ZeRO
 * partition spans. 0 when I is out of range.
 */
size_t weld_ckpt_tensor_parts(const weld_ckpt *ckpt, size_t i);
/* Number of input files the tensors come from, and each one's path. */
size_t weld_ckpt_file_count(const weld_ckpt *ckpt);
const char *weld_ckpt_file(const weld_ckpt *ckpt, size_t i);
/* NULL unless the format is WELD_FORMAT_DEEPSPEED. */
const weld_deepspeed_info *weld_ckpt_deepspeed(const weld_ckpt *ckpt);
/*
 * With --type auto on a folder holding several kinds of weights: one line
 * saying which were read and which passed over (a DeepSpeed tag's fp32
 * masters before an HF Trainer's 16-bit copy; safetensors before .bin).
 * NULL when there was no choice. Borrowed.
 */
const char *weld_ckpt_choice_note(const weld_ckpt *ckpt);

/*
 * Read tensor I as contiguous little-endian bytes (C order) into DST, which
 * must hold exactly info.nbytes. Strided views are gathered from their whole
 * zip record, whose CRC-32 is checked; the record of another view is checked
 * when the rest of it is no larger than the tensor. Thread-safe for one
 * checkpoint.
 */
weld_status weld_ckpt_read_tensor(weld_ckpt *ckpt, size_t i, void *dst, size_t dst_nbytes,
				  weld_error *err);


/* ------------------------------------------------------------------------- */
/* Conversion: a checkpoint to one servable output folder.                    */

typedef enum weld_out_dtype {
	WELD_OUT_BF16 = 0, /* the default */
	WELD_OUT_F16,
	WELD_OUT_F32,
	WELD_OUT_KEEP      /* every tensor keeps its dtype (ZeRO: the dtypes zero_to_fp32 gives) */
} weld_out_dtype;

typedef enum weld_device {
	WELD_DEVICE_AUTO = 0, /* CUDA when a device is usable, else the CPU */
	WELD_DEVICE_CPU,
	WELD_DEVICE_CUDA
} weld_device;

/* What a run is doing when it reports progress. */
typedef enum weld_phase {
	WELD_PHASE_CONVERT = 0,  /* bytes_done/total: output tensor bytes */
	WELD_PHASE_CROSS_CHECK   /* bytes_done/total: bytes of the HF 16-bit copy read (weld_cross_check) */
} weld_phase;

typedef struct weld_progress {
	uint64_t bytes_done, bytes_total; /* output tensor bytes (see phase) */
	uint64_t bytes_read;              /* from the sources so far, in this phase */
	double seconds;                   /* since the data started to move, in this phase */
	weld_phase phase;
} weld_progress;

/* Called from the calling thread a few times a second; nonzero cancels the run. */
typedef int (*weld_progress_fn)(const weld_progress *progress, void *payload);

struct weld_convert_result;
/*
 * Called once from the calling thread when the plan is made and the backend
 * chosen, before any tensor data moves: PLANNED holds the format, tensor
 * count, bytes to read and write, output file, backend, threads and notice
 * (e.g. why CUDA is not used) of the run about to start.
 */
typedef void (*weld_start_fn)(const struct weld_convert_result *planned, void *payload);

/* What to do when HF 16-bit weights beside DeepSpeed masters disagree with them. */
typedef enum weld_cross_check_mode {
	WELD_CROSS_CHECK_WARN = 0, /* report it; convert anyway (the default) */
	WELD_CROSS_CHECK_ERROR,    /* WELD_ERR_MISMATCH, nothing published */
	WELD_CROSS_CHECK_OFF       /* do not read them at all */
} weld_cross_check_mode;

/*
 * Options of weld_convert. Initialise with weld_convert_options_init (or
 * WELD_CONVERT_OPTIONS_INIT) and then set fields: struct_size records the
 * size of the struct the caller was compiled with, so fields appended in
 * later versions take their defaults for older callers.
 */
typedef struct weld_convert_options {
	size_t struct_size;    /* sizeof(weld_convert_options), set by the initialisers */
	weld_out_dtype dtype;
	int pytorch_bin;       /* write pytorch_model.bin instead of model.safetensors */
	weld_device device;
	weld_input_type type;
	int threads;           /* CPU worker threads; 0 = all cores */
	int force;             /* replace an existing output folder whole; take over a lock another host left */
	size_t chunk_bytes;    /* output bytes per work unit; 0 = 8 MiB */
	weld_progress_fn progress; /* may be NULL */
	void *payload;
	int dry_run;           /* plan only: fill the result's byte counts, write nothing */
	int replace;           /* replace an existing output folder, but never take over another's lock */
	weld_start_fn start;   /* may be NULL; gets PAYLOAD too */
	weld_cross_check_mode cross_check;
	const char *const *allow_globals; /* as weld_open_options' (--allow-global); may be NULL */
	size_t nallow_globals;
	/*
	 * The folder to copy config.json, tokenizer and other small files from,
	 * and whose config decides tied embeddings; NULL: the input's folder.
	 * An HF Trainer FSDP checkpoint holds none: the base model's folder has them.
	 */
	const char *side_files;
	/*
	 * Shard the safetensors output as transformers' save_pretrained(
	 * max_shard_size=...) does: "5GB", "500MB", "0.5KB" (TB/GB/MB/KB,
	 * powers of 1000, case-insensitive) or a plain number of bytes (its
	 * int form); weld_shard_size_parse says what is accepted. NULL: one
	 * file. A model that fits one shard is one model.safetensors, as there.
	 * Not with pytorch_bin (transformers 5 writes no .bin).
	 */
	const char *max_shard_size;
	/*
	 * One conversion run as PARTS processes at once (Slurm tasks, on as many
	 * nodes): this one is part PART (0 ... PARTS-1). The plan is cut into
	 * PARTS runs of about equal bytes to read; each part reads only its
	 * sources and pwrites its byte ranges into one staging folder beside the
	 * output, ".NAME.weld-parts", which every part finds from the output's
	 * name, and records its CRC-32s there. The part that records last
	 * publishes the output whole (exactly one: it wins an O_EXCL claim);
	 * until then the others return WELD_OK with a notice saying which parts
	 * are still to come. A failed or killed part leaves the others' work:
	 * rerunning that part alone completes the job, and
	 * weld_convert_finish publishes one whose last part could not. PARTS 0
	 * or 1: one process does everything, as ever. The library reads no
	 * environment: weld convert takes these from SLURM_NTASKS/SLURM_PROCID.
	 */
	unsigned parts;
	unsigned part;
} weld_convert_options;

#define WELD_CONVERT_OPTIONS_INIT                                                                              \
	{sizeof(weld_convert_options), WELD_OUT_BF16, 0, WELD_DEVICE_AUTO, WELD_INPUT_AUTO, 0, 0, 0, NULL, NULL, 0, 0, \
	 NULL, WELD_CROSS_CHECK_WARN, NULL, 0, NULL, NULL, 0, 0}

/*
 * TEXT as transformers 5.24 (huggingface_hub's parse_size_to_int) reads a
 * max_shard_size string, into *BYTES: the last two characters, upper-cased,
 * are the unit TB, GB, MB or KB (10^12 ... 10^3), what is before them a
 * number as Python's float() reads it, and the product truncated toward
 * zero, clamped to int64. A string of digits alone is a number of bytes
 * (save_pretrained's int form). Anything it refuses ("5GiB", "5", "xGB",
 * "infGB") is WELD_ERR_INVALID_ARG with one line saying why.
 */
weld_status weld_shard_size_parse(const char *text, int64_t *bytes, weld_error *err);

/* The defaults: bf16, model.safetensors, device auto, all cores, 8 MiB chunks. */
void weld_convert_options_init(weld_convert_options *options);

typedef enum weld_cross_check_result {
	WELD_CROSS_CHECK_NONE = 0, /* no HF weights beside the masters (or the check was off) */
	WELD_CROSS_CHECK_AGREE,    /* every compared tensor has the CRC-32 of the output's */
	WELD_CROSS_CHECK_DIFFER,   /* at least one compared tensor differs */
	WELD_CROSS_CHECK_SKIPPED   /* there, but nothing comparable (placeholders, another dtype, unreadable) */
} weld_cross_check_result;

/* "none", "agree", "differ", "skipped". */
const char *weld_cross_check_result_name(weld_cross_check_result result);

/*
 * An HF Trainer checkpoint-N with DeepSpeed holds the model twice: the fp32
 * masters weld converts, and the Trainer's own 16-bit copy. Each output
 * tensor of that dtype is compared (by CRC-32) with the copy's tensor of
 * the same name: a free check that the masters are the model that trained.
 */
typedef struct weld_cross_check {
	weld_cross_check_result result;
	char against[32];      /* the copy's format, e.g. "safetensors" */
	size_t compared;       /* tensors of the copy compared */
	size_t differing;
	size_t placeholders;   /* empty tensors (ZeRO-3 without gathered weights): skipped */
	size_t not_compared;   /* another dtype or shape, a name the masters lack, a view too costly to read */
	size_t missing;        /* output tensors the copy does not hold */
	uint64_t bytes_read;   /* of the copy (also counted in the result's bytes_read) */
	char first_difference[256]; /* name of the first differing tensor, or "" */
	char summary[512];     /* one line saying all of it */
} weld_cross_check;

/* Files of one name pattern (digit runs as N) and the tensor bytes a conversion reads from them. */
typedef struct weld_read_group {
	char pattern[96];  /* e.g. "bf16_zero_pp_rank_N_mp_rank_N_optim_states.pt"; "other files" for the rest */
	size_t files;
	uint64_t bytes;    /* tensor data to read; 0 for files read only for their headers and pickles */
} weld_read_group;

#define WELD_READ_GROUPS_MAX 8

/*
 * What weld_convert did. It grows at the end in new versions; callers
 * compiled against an older weld.h must be rebuilt (0.x).
 */
typedef struct weld_convert_result {
	size_t tensors;           /* written */
	size_t tied;              /* aliases written once, under their owner's name */
	uint64_t bytes_read;      /* from the source files, pickles and headers included */
	uint64_t bytes_written;   /* size of the weights file (sharded: of every shard) */
	uint64_t fp16_overflows;  /* finite values that became inf in a float16 cast */
	uint32_t file_crc32;      /* zlib CRC-32 of the weights file (sharded: of the index) */
	double seconds;
	int threads;
	char backend[16];         /* "cpu" or "cuda" */
	char stripped_prefix[32]; /* "module." etc., empty when none */
	char notice[2048];        /* one line for the user (e.g. why not CUDA, how it was published), or empty */
	char output_file[4096];   /* path of the weights file (sharded: of the index) */
	char format[32];          /* the input's format name, e.g. "deepspeed" */
	char format_detail[96];   /* e.g. "ZeRO-3, 16 ranks, tag global_step300"; may be empty */
	char source_choice[4608]; /* weld_ckpt_choice_note: which weights of the folder were read; may be empty */
	uint64_t bytes_to_read;   /* what the plan reads (bytes_read: what was read) */
	weld_cross_check cross_check;
	weld_read_group reads[WELD_READ_GROUPS_MAX]; /* the plan's reads by kind of file, largest first */
	size_t nreads;
	uint64_t plan_bytes;      /* memory of the plan's tables: tensors, fragments, records, names */
	size_t files;             /* weight files written: 1, or the shards (output_file is then their index) */
} weld_convert_result;

/*
 * Convert INPUT (anything weld_ckpt_open reads) into OUTPUT_DIR: one
 * model.safetensors (or pytorch_model.bin), the side files, and the weld.json
 * manifest. The weights are written under a temporary name, fsynced and
 * renamed, so an error or a cancel leaves no output file behind.
 * WELD_ERR_NO_DEVICE: --device cuda without a usable GPU; WELD_ERR_DEVICE:
 * the GPU failed during the run; WELD_ERR_CANCELLED: the progress callback
 * asked to stop. OPTIONS may be NULL (the defaults), RESULT too.
 */
weld_status weld_convert(const char *input, const char *output_dir, const weld_convert_options *options,
			 weld_convert_result *result, weld_error *err);

/*
 * Publish the multi-part conversion into OUTPUT_DIR (options.parts) whose
 * parts are all recorded but whose last part could not publish it (it was
 * killed, or failed there). The input and options are the job's own, as
 * its folder records them; of OPTIONS only threads, device, progress,
 * payload and start are used. A part not recorded: WELD_ERR_INVALID_ARG
 * naming every missing one; no unfinished job there: WELD_ERR_INVALID_ARG.
 */
weld_status weld_convert_finish(const char *output_dir, const weld_convert_options *options,
				weld_convert_result *result, weld_error *err);

/*
 * WELD_OK when DIR holds a weld.json whose weights file exists with the
 * recorded size and CRC-32 (recomputed), and nothing of an unfinished
 * conversion (a temporary file in DIR, a staging folder beside it); otherwise
 * why not, in ERR. Reads the whole weights file.
 */
weld_status weld_output_intact(const char *dir, weld_error *err);
/*
 * weld_output_intact, and made from SOURCE: weld.json's source_path (the
 * input, resolved when it was converted) is SOURCE's realpath, so an output
 * another run left under the same name is not taken for SOURCE's. A
 * weld.json without source_path (an older weld's) names no source: not
 * intact. WELD_ERR_MISMATCH names the source DIR was made from in ERR.
 * Checked before the weights are read.
 */
weld_status weld_output_intact_from(const char *dir, const char *source, weld_error *err);

/* ------------------------------------------------------------------------- */
/* verify: is an output folder intact and servable? (weld verify)             */

typedef enum weld_check_level {
	WELD_CHECK_PASS = 0,
	WELD_CHECK_WARN,     /* servable, but worth knowing */
	WELD_CHECK_FAIL
} weld_check_level;

/* "PASS", "WARN", "FAIL". */
const char *weld_check_level_name(weld_check_level level);

#define WELD_CHECK_DETAIL_MAX 512

/* One line of the report. NAME is static and stable (e.g. "crc32", "config_dtype"). */
typedef struct weld_check {
	const char *name;
	weld_check_level level;
	char detail[WELD_CHECK_DETAIL_MAX];
} weld_check;

/* With a source (--against): one output tensor against the source cast to its dtype. */
typedef struct weld_tensor_diff {
	char *name;               /* output name; owned by the report */
	weld_dtype dtype;         /* output dtype */
	weld_dtype source_dtype;
	uint64_t numel;
	int exact;                /* 1 when the bytes equal the source cast exactly */
	double max_abs_diff;      /* vs the source widened to double; inf when one side is NaN/Inf and the other not */
	double rel_l2;            /* ||out - src|| / ||src||; with ||src|| 0: 0, or inf if the output differs */
	uint64_t nan_count, inf_count; /* in the output */
} weld_tensor_diff;

typedef struct weld_verify_report {
	char format[32];          /* "safetensors", "pytorch-bin", or "" when none was found */
	char weights_file[256];   /* e.g. "model.safetensors"; "" when none */
	uint64_t tensors, tied, parameters, bytes; /* bytes: tensor data */
	char device[16];          /* what computed the CRC-32s: "cpu" or "cuda" */
	char notice[256];         /* e.g. why CUDA was not used; may be empty */
	weld_check *checks;       /* in report order */
	size_t nchecks;
	weld_tensor_diff *diffs;  /* with a source: one per compared output tensor */
	size_t ndiffs;
	size_t passed, warnings, failed;
} weld_verify_report;

/*
 * Verify the output folder DIR: weight files valid, sizes and CRC-32s as
 * weld.json records (recomputed on DEVICE's backend), and servability
 * (config.json, its dtype, one weight format, no wrapper prefixes, tied
 * weights, tokenizer files, safetensors metadata). With AGAINST (any input
 * weld reads; may be NULL) also: the same tensor names and shapes, every
 * tensor exactly the source cast to its dtype, per-tensor error stats, and
 * for DeepSpeed ZeRO 0-2 the stored 16-bit module weights. A failed check is
 * a FAIL line in *OUT, not an error: the status is nonzero only when DIR
 * could not be examined at all (missing, unreadable, AGAINST unopenable,
 * --device cuda without a GPU, out of memory). Free *OUT with
 * weld_verify_report_free.
 */
weld_status weld_verify(const char *dir, const char *against, weld_device device, weld_verify_report **out,
			weld_error *err);
void weld_verify_report_free(weld_verify_report *report);

/* end of verify ----------------------------------------------------------- */

/* ---- scan: the globals a pickle references, without loading it ---------- */

typedef enum weld_scan_verdict {
	WELD_SCAN_SAFE,      /* every global is on weld's allowlist (inert data) */
	WELD_SCAN_UNSAFE,    /* some global is not, or getattr is used otherwise than on a class member */
	WELD_SCAN_MALFORMED  /* not a pickle weld can walk: truncated, unknown opcode, bad zip... */
} weld_scan_verdict;

const char *weld_scan_verdict_name(weld_scan_verdict verdict);

typedef struct weld_scan_global {
	const char *pickle; /* which pickle: a zip member ("archive/data.pkl"), "pickle 3" (legacy), "" (bare) */
	char *module, *name; /* as Python 3 spells them; NULL when an operand is not a known string */
	uint64_t offset;     /* of the GLOBAL/STACK_GLOBAL/INST opcode in its pickle */
	bool allowed;
	char *why;           /* unsafe ones: why, in words */
} weld_scan_global;

typedef struct weld_scan_report {
	char *path;
	weld_scan_verdict verdict;
	size_t npickles;
	weld_scan_global *globals; /* every reference, in file order */
	size_t nglobals;
	char *problem;             /* MALFORMED: what and where (offset) */
} weld_scan_report;

/*
 * Walks every pickle in the file PATH (a torch zip's *.pkl members, the
 * pickles of a legacy torch file, or a bare pickle file) opcode by opcode,
 * as pickletools.genops does, building no object and calling nothing, and
 * lists each global referenced with the allowlist's verdict (the one the
 * reader applies). Only an unreadable file or lack of memory is an error;
 * a file that is not a pickle is a MALFORMED report. Free with
 * weld_scan_report_free.
 */
weld_status weld_scan_file(const char *path, weld_scan_report **out, weld_error *err);
/*
 * weld_scan_file with the classes in OPTIONS->allow_globals counted as
 * allowed, as weld_ckpt_open_with accepts them (NULL: none; the type is
 * ignored). A name that is not MODULE.NAME, or has a dunder part, is
 * WELD_ERR_INVALID_ARG.
 */
weld_status weld_scan_file_with(const char *path, const weld_open_options *options, weld_scan_report **out,
				weld_error *err);
void weld_scan_report_free(weld_scan_report *report);

#ifdef __cplusplus
}
#endif

#endif /* WELD_H */
