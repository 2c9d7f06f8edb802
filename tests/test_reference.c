/*
 * Inputs where the reference readers (Python safetensors, torch.load) and
 * weld must agree, from tests/fixtures/make_reference_edges.py: what the
 * reference accepts converts to the reference writer's bytes; what it
 * refuses, weld refuses with its own message.
 */
#include "weld.h"
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

int main(void)
{
	CHECK(scratch_init("reference") == 0);
	check_ws_header();
	check_zip_version();
	check_local_header();
	CHECK(scratch_remove() == 0);
	TEST_DONE();
}
