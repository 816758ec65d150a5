/* envdump FILE: writes its whole environment to FILE, one variable a line (a hook's env, with
 * nothing a shell would add). */
#include <stdio.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    FILE *out = fopen(argv[1], "w");
    if (!out)
        return 1;
    for (char **e = environ; *e; e++)
        fprintf(out, "%s\n", *e);
    return fclose(out) == 0 ? 0 : 1;
}
