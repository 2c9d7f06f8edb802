#include "cuda_backend.h"
#include "kernels.cuh"

namespace {
struct Slot {
	int n;
	int size() const { return n; }
};
constexpr char kMix[] = {1'0, '}', 2'0}; // digit separators, not characters
const char *kRaw = R"x(a raw string with braces {{ )x";
} // namespace

__global__ void __launch_bounds__(256) gather(int *out)
{
	out[threadIdx.x] = weld_cuda::twice(out[threadIdx.x]);
}

extern "C" int weld__cuda_open(int device)
{
	Slot s{device};
	return s.size() + (kRaw[0] == '{');
}
