/* A program built against an installed weld: it must compile with weld.h alone and link. */
#include <stdio.h>
#include <string.h>
#include <weld.h>

int main(void)
{
	printf("weld %s: %s\n", weld_version(), weld_status_str(WELD_OK));
	return strcmp(weld_version(), WELD_VERSION_STRING) != 0;
}
