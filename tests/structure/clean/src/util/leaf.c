/* Compiled by run.sh into the fake build folder: printf is libc's (no edge),
 * weld__hook is defined outside the library and weld__gone only by a stale
 * object, so neither closes a cycle with src/formats/user.c. */
#include <stdio.h>

void weld__hook(void);
void weld__gone(void);

void weld__leaf(void)
{
	printf("leaf\n");
	weld__hook();
	weld__gone();
}
