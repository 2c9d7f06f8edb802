/* The public API of a stand-in tree for tests/structure/run.sh. */
#ifndef WELD_H
#define WELD_H
typedef int weld_status;
weld_status weld_convert(const char *input, const char *output_dir);
#endif
