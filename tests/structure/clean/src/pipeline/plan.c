/* One function of exactly 120 lines, the limit: multi-line signature,
 * braces in strings, characters, comments, an #if 0 and a macro. */
#include "pipeline/plan.h"
#include "backend/backend.h"

#define EACH(i, n) for (int i = 0; i < (n); i++) {

int weld__plan_build(const weld_ckpt *c,
		     int threads)
{
	int n = c->tensors;
	const char *s = "{ not a brace";
	char k = '{';
#if 0
	} /* dead code, unbalanced */
#else
	if (n && s[0] == k) {
#endif
		n++;
	}
	/* } { */
	EACH(j, threads)
		n += j;
	}
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	n += threads; // }
	return n + weld__backend_open(0);
}
