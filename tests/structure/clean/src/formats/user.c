/* Compiled by run.sh: uses src/util/leaf.c, one way. */
void weld__leaf(void);

void weld__user(void)
{
	weld__leaf();
}
