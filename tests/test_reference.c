/*
 * Inputs where the reference readers (Python safetensors, torch.load) and
 * weld must agree, from tests/fixtures/make_reference_edges.py: what the
 * reference accepts converts to the reference writer's bytes; what it
 * refuses, weld refuses with its own message.
 */
#include "weld.h"

#include <string.h>
#include "test_util.h"

static weld_status convert(const char *input, const char *out, weld_out_dtype dtype, weld_convert_result *r,
			   weld_error *err)
{
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	o.dtype = dtype;
	o.threads = 2;
	o.device = WELD_DEVICE_CPU;
	o.force = 1;
	return weld_convert(input, out, &o, r, err);
}

/* INPUT converts (under DTYPE) to exactly the reference's EXPECTED file. */
static void converts_to(const char *input, weld_out_dtype dtype, const char *expected)
{
	weld_error err = {0};
	weld_convert_result r;
	CHECK_OK(convert(fixture(input), scratch("out"), dtype, &r, &err), &err);
	char got[4096];
	snprintf(got, sizeof(got), "%s/model.safetensors", scratch("out"));
	if (!same_file(got, fixture(expected))) {
		fprintf(stderr, "%s: output differs from %s\n", input, expected);
		test_failures++;
	}
}

/* serde_json skips whitespace before the header's '{'; so does weld. */
static void check_ws_header(void)
{
	converts_to("st_ref/ws_header.safetensors", WELD_OUT_KEEP, "st_ref/ws_header_expected.safetensors");
}

/* INPUT is refused with STATUS and "<input>: MSG". */
static void refused(const char *input, weld_status status, const char *msg)
{
	weld_error err = {0};
	weld_convert_result r;
	char want[1024];
	snprintf(want, sizeof(want), "%s: %s", fixture(input), msg);
	CHECK_ERR(convert(fixture(input), scratch("out"), WELD_OUT_KEEP, &r, &err), status, &err, want);
}

/* torch.load reads file format versions 1..10 and needs a 'version' record. */
static void check_zip_version(void)
{
	refused("st_ref/zip_version_99.pt", WELD_ERR_UNSUPPORTED,
		"file format version 99 is outside the 1..10 torch.load reads");
	refused("st_ref/zip_no_version.pt", WELD_ERR_FORMAT, "no 'version' record (torch.load refuses such a file)");
	weld_error err = {0};
	weld_convert_result r;
	CHECK_OK(convert(fixture("st_ref/zip_version_ok.pt"), scratch("out"), WELD_OUT_KEEP, &r, &err), &err);
}

/* A record torch reads and weld has no use for still needs a sound local header. */
static void check_local_header(void)
{
	refused("st_ref/zip_bad_local_header.pt", WELD_ERR_FORMAT,
		"record '.data/serialization_id' has no local header at offset 850");
}

/*
 * F4, F6_E2M3, F6_E3M2: sized numel x bits / 8 as the reference reader
 * sizes them, copied as bytes under every --dtype (never cast), written in
 * the reference writer's order (its Dtype enum, descending).
 */
static void check_sub_byte(void)
{
	converts_to("st_ref/subbyte.safetensors", WELD_OUT_KEEP, "st_ref/subbyte_expected.safetensors");
	converts_to("st_ref/subbyte.safetensors", WELD_OUT_BF16, "st_ref/subbyte_expected.safetensors");
	refused("st_ref/subbyte_misaligned.safetensors", WELD_ERR_FORMAT, "tensor 't': F4 [3] is not a whole number of bytes");
	CHECK(weld_dtype_from_name("F4") == WELD_DTYPE_F4 && weld_dtype_bits(WELD_DTYPE_F4) == 4);
	CHECK(weld_dtype_from_name("F6_E2M3") == WELD_DTYPE_F6_E2M3 && weld_dtype_bits(WELD_DTYPE_F6_E2M3) == 6);
	CHECK(weld_dtype_from_name("F6_E3M2") == WELD_DTYPE_F6_E3M2 && weld_dtype_bits(WELD_DTYPE_F6_E3M2) == 6);
	CHECK(weld_dtype_from_name("F8_E8M0") == WELD_DTYPE_F8_E8M0 && weld_dtype_bits(WELD_DTYPE_F8_E8M0) == 8);

	/* inspect's numbers: elements from the shape, bytes from the bits. */
	weld_ckpt *c;
	weld_error err = {0};
	CHECK_OK(weld_ckpt_open(&c, fixture("st_ref/subbyte.safetensors"), &err), &err);
	if (c) {
		for (size_t i = 0; i < weld_ckpt_tensor_count(c); i++) {
			weld_tensor_info ti;
			CHECK(weld_ckpt_tensor(c, i, &ti) == WELD_OK);
			if (strcmp(ti.name, "w_f4") == 0)
				CHECK(ti.numel == 8 && ti.nbytes == 4);
			if (strcmp(ti.name, "w_e2m3") == 0)
				CHECK(ti.numel == 4 && ti.nbytes == 3);
		}
		weld_ckpt_free(c);
	}

	/* No torch dtype holds one F4 or F6 element: --pytorch-bin refuses rather than guess. */
	weld_convert_options o = WELD_CONVERT_OPTIONS_INIT;
	o.dtype = WELD_OUT_KEEP;
	o.device = WELD_DEVICE_CPU;
	o.force = 1;
	o.pytorch_bin = 1;
	weld_convert_result r;
	CHECK(weld_convert(fixture("st_ref/subbyte.safetensors"), scratch("bin"), &o, &r, &err) == WELD_ERR_UNSUPPORTED);
	CHECK(strstr(err.message, "which no torch dtype holds one element of") != NULL);
}

/* What the reference accepts and weld refuses on purpose (README: the deviations). */
static void check_deviations(void)
{
	refused("st_ref/nul_name.safetensors", WELD_ERR_UNSUPPORTED, "tensor name at byte 1 contains a NUL character");
	refused("st_ref/nul_meta.safetensors", WELD_ERR_UNSUPPORTED, "__metadata__ value for 'k' contains a NUL character");
	refused("st_ref/dup_name.safetensors", WELD_ERR_FORMAT, "duplicate tensor name 'a'");
}

int main(void)
{
	CHECK(scratch_init("reference") == 0);
	check_ws_header();
	check_zip_version();
	check_local_header();
	check_sub_byte();
	check_deviations();
	CHECK(scratch_remove() == 0);
	TEST_DONE();
}
