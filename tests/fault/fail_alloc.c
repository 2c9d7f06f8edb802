/*
 * An allocation-failure shim for the shell tests, loaded with LD_PRELOAD:
 *
 *   WELD_FAIL_ALLOC_AT=N     the Nth allocation counted from process start,
 *                            and every later one, fail (NULL, errno ENOMEM)
 *   WELD_FAIL_ALLOC_COUNT=F  at exit, write the number of allocations to F
 *
 * It forwards to glibc's own entry points (__libc_malloc and friends), not to
 * dlsym(RTLD_NEXT, ...), which itself allocates. glibc calls malloc through
 * the PLT, so its own allocations (strdup, opendir, stdio buffers) count too;
 * free needs no wrapper, the blocks are glibc's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

static unsigned long long fail_at; /* 0: never fail */
static unsigned long long count;   /* allocations so far, from any thread */
static const char *count_file;

/* Before the program's constructors; an allocation made even earlier counts but cannot fail. */
__attribute__((constructor(101))) static void init(void)
{
	const char *at = getenv("WELD_FAIL_ALLOC_AT");
	fail_at = at ? strtoull(at, NULL, 10) : 0;
	count_file = getenv("WELD_FAIL_ALLOC_COUNT");
}

/* Counts one allocation; nonzero when it is to fail. */
static int fail_this(void)
{
	unsigned long long n = __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
	if (fail_at && n >= fail_at) {
		errno = ENOMEM;
		return 1;
	}
	return 0;
}

/* With write(2) only: stdio would allocate while we count. */
__attribute__((destructor)) static void report(void)
{
	if (!count_file)
		return;
	char buf[24];
	size_t i = sizeof(buf);
	unsigned long long n = __atomic_load_n(&count, __ATOMIC_RELAXED);
	buf[--i] = '\n';
	do
		buf[--i] = (char)('0' + n % 10);
	while ((n /= 10) && i > 0);
	int fd = open(count_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;
	/* On a short write the test finds no count and says so. */
	ssize_t w = write(fd, buf + i, sizeof(buf) - i);
	(void)w;
	close(fd);
}

void *malloc(size_t size)
{
	return fail_this() ? NULL : __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
	return fail_this() ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
	return fail_this() ? NULL : __libc_realloc(p, size);
}

/* glibc's own reallocarray and aligned allocators do not go through realloc/malloc. */
void *reallocarray(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, n * size);
}

void *memalign(size_t align, size_t size)
{
	return fail_this() ? NULL : __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
	return memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
	if (align % sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	void *p = memalign(align, size);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *valloc(size_t size)
{
	return memalign((size_t)sysconf(_SC_PAGESIZE), size);
}
