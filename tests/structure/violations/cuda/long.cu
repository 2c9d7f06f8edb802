/* One function of 121 lines, one over the limit: in an extern "C" block,
 * with a multi-line signature, braces in literals (raw strings too) and
 * comments, digit separators, and a brace that a macro hides. */
#include "cuda_backend.h"

#define END_EACH }

namespace weld_cuda {
struct Pair {
	int a, b;
};
} // namespace weld_cuda

/* File-scope braces that are not braces; any one misread hides the function. */
static const char kOpen = '{'; // and a line comment's {
static const int kTable[4] __attribute__((aligned(16))) = {
	1, 2, 3, 4 };
static const char kDigits[] = {1'0, '{', 2'0};
static const char *kRaw = R"x(a lone quote " and a brace {)x";
#if 0
static int dead(void) {
#endif
#if defined(__GNUC__)
static const int kFlags[] = {
#else
static const int kFlags[] = {
#endif
	1, 2 };

extern "C" {

int weld__cuda_long(int a,
		    int b)
{
	const char *open = "{{{";
	char close = '}';
	/* { */
	if (a == close) {
		b += open[0];
	}
	b += 1'000 + '}' + 2'000; // digit separators, not characters
	const char *raw = R"x(a lone quote " and a brace {)x";
	for (int i = 0; i < a; i++) {
		b += raw[i];
	END_EACH
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	b += a; // {
	return b;
}

} // extern "C"
