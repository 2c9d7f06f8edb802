#include "cuda_backend.h"
#include "kernels.cuh"

int main()
{
	return weld__cuda_open(0);
}
