#include "io/torch.h"
