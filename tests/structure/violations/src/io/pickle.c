/* An include cycle: module src/io/pickle uses src/io/torch and back. */
#include "io/pickle.h"
#include "io/torch.h"
